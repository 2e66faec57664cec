"""The CLI end to end (real subprocesses, real database) and its answers to bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli_runner import cli

TOOLS_PY = '''
from perfsmith import tool

@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())

@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''

SCRIPT = {
    "planner": ["1. word_count('a b c')\n2. word_count('d e')\n3. add($1, $2)\njoin()\n"],
    "joiner": ["Thought: summed\nAction: Finish(5 words)"],
}


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str) -> dict[str, str]:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "script.json").write_text(json.dumps(SCRIPT))
    (tmp_path / "bad.json").write_text("{not json")
    return {**os.environ, "PERFSMITH_DATABASE_URL": sqlite_url, "COLUMNS": "160"}


def run_count(env: dict[str, str]) -> int:
    listed = cli(env, "runs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return len(json.loads(listed.stdout))


def test_run_list_show_end_to_end(env: dict[str, str], tmp_path: Path) -> None:
    done = cli(
        env,
        "run",
        "count all words",
        "--tools",
        str(tmp_path / "tools.py"),
        "--llm",
        f"scripted:{tmp_path / 'script.json'}",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["answer"] == "5 words" and result["status"] == "done"

    runs = json.loads(cli(env, "runs", "list", "--json").stdout)
    assert [r["id"] for r in runs] == [result["run_id"]]

    shown = json.loads(cli(env, "runs", "show", result["run_id"], "--json").stdout)
    assert [(t["idx"], t["tool"], t["status"], t["deps"]) for t in shown["tasks"]] == [
        (1, "word_count", "done", []),
        (2, "word_count", "done", []),
        (3, "add", "done", [1, 2]),
    ]
    assert shown["tasks"][2]["result"] == "5"
    assert shown["plans"][0]["decision"] == "finish"

    table = cli(env, "runs", "show", result["run_id"])
    assert table.returncode == 0
    assert "word_count" in table.stdout and "answer: 5 words" in table.stdout
    assert "critical path" in table.stdout


def test_demo_runs_real_tools_and_prints_the_dag(env: dict[str, str]) -> None:
    done = cli(env, "demo")
    assert done.returncode == 0, done.stderr
    assert "time_snippet" in done.stdout and "rank" in done.stdout
    assert "is fastest" in done.stdout and "critical path" in done.stdout
    assert run_count(env) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "x"], 2, "Missing option '--tools'"),
        (
            ["run", "x", "--tools", "{tmp}/nope.py", "--llm", "scripted:{tmp}/script.json"],
            1,
            "does not exist",
        ),
        (
            ["run", "x", "--tools", "no.such.module", "--llm", "scripted:{tmp}/script.json"],
            1,
            "cannot import tool module",
        ),
        (
            ["run", "x", "--tools", "{tmp}/tools.py", "--llm", "scripted:{tmp}/missing.json"],
            1,
            "script file",
        ),
        (
            ["run", "x", "--tools", "{tmp}/tools.py", "--llm", "scripted:{tmp}/bad.json"],
            1,
            "not valid JSON",
        ),
        (["run", "x", "--tools", "{tmp}/tools.py", "--llm", "ftp://host"], 1, "unknown LLM spec"),
        (
            ["run", "x", "--tools", "{tmp}/tools.py", "--llm", "local:no-such-model"],
            1,
            "unknown model 'no-such-model'",
        ),
        (
            [
                "run",
                "x",
                "--tools",
                "{tmp}/tools.py",
                "--llm",
                "scripted:{tmp}/script.json",
                "--max-replans",
                "-1",
            ],
            2,
            "Invalid value",
        ),
        (["optimize", "{tmp}/nope.py::add", "--llm", "none"], 2, "does not exist"),
        (["optimize", "{tmp}/tools.py::sub", "--llm", "none"], 2, "defines no function 'sub'"),
        (
            ["optimize", "{tmp}/tools.py::add", "--llm", "none", "--candidate", "{tmp}/c.py"],
            2,
            "is not a readable file",
        ),
        (["runs", "show", "0123"], 1, "no run with id '0123'"),
        (["runs", "resume", "0123"], 1, "no run with id '0123'"),
        (["runs", "list", "--limit", "0"], 2, "Invalid value"),
        (["runs", "list", "--db", "postgresql://nobody@127.0.0.1:1/x"], 1, "cannot reach"),
        (["runs", "frobnicate"], 2, "No such command"),
    ],
)
def test_bad_input_gives_clear_errors_and_writes_nothing(
    env: dict[str, str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    result = cli(env, *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert run_count(env) == 0


def test_python_api_runs_cannot_be_resumed_from_the_cli(
    env: dict[str, str], sqlite_url: str
) -> None:
    from perfsmith.storage.db import Database
    from perfsmith.storage.runs import RunStore

    run_id = RunStore(Database(sqlite_url)).create_run("from python")
    result = cli(env, "runs", "resume", run_id)
    assert result.returncode == 1 and "perfsmith.resume" in result.stderr

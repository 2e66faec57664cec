"""A run killed with SIGKILL mid-way resumes with `perfsmith runs resume` and finishes
without executing any completed task a second time (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from perfsmith.storage.db import Database
from perfsmith.storage.runs import RunStore
from tests.cli_runner import PERFSMITH, cli

TOOLS_PY = '''
import asyncio, os, pathlib
from perfsmith import tool

LOG = pathlib.Path(os.environ["STEP_LOG"])

def note(text):
    with LOG.open("a") as f:
        f.write(text + "\\n")

@tool
async def step(name: str, after: list = []) -> str:
    """Record a step; waits for a release file named after the step if one is expected."""
    note("start " + name)
    gate = LOG.with_name("gate-" + name)
    if gate.with_suffix(".expected").exists():
        while not gate.exists():
            await asyncio.sleep(0.02)
    note("end " + name)
    return name + "<" + ",".join(after) + ">"
'''

PLAN = (
    "1. step('a')\n2. step('b')\n3. step('c', ['$1'])\n4. step('d', [$2, $3])\n"
    "5. step('e', [$1])\njoin()\n"
)


def test_sigkill_mid_run_then_resume_runs_each_task_once(tmp_path: Path, db_url: str) -> None:
    (tmp_path / "tools.py").write_text(TOOLS_PY)
    (tmp_path / "script.json").write_text(
        json.dumps(
            {
                "planner": [PLAN],
                "joiner": ["Thought: all steps ran\nAction: Finish(steps done)"],
            }
        )
    )
    log = tmp_path / "steps.log"
    (tmp_path / "gate-c.expected").touch()  # step c blocks until released
    env = {**os.environ, "STEP_LOG": str(log), "PERFSMITH_DATABASE_URL": db_url}
    args = [
        "run",
        "process the steps",
        "--tools",
        str(tmp_path / "tools.py"),
        "--llm",
        f"scripted:{tmp_path / 'script.json'}",
        "--json",
    ]
    proc = subprocess.Popen(
        [*PERFSMITH, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = RunStore(Database(db_url))
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "run never reached step c"
        runs = store.list_runs()
        if runs:
            status = {t.idx: t.status for t in store.tasks(runs[0].id)}
            if (
                status.get(1) == "done"
                and status.get(2) == "done"
                and status.get(5) == "done"
                and status.get(3) == "running"
            ):
                break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_id = runs[0].id
    assert store.get_run(run_id).status == "running"  # as the kill left it

    (tmp_path / "gate-c").touch()
    resumed = cli(env, "runs", "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out == {"run_id": run_id, "status": "done", "answer": "steps done", "rounds": 1}

    lines = log.read_text().splitlines()
    for name in "abde":
        assert lines.count(f"start {name}") == 1, lines
        assert lines.count(f"end {name}") == 1, lines
    assert lines.count("start c") == 2 and lines.count("end c") == 1  # killed while running
    tasks = {t.idx: t for t in store.tasks(run_id)}
    assert all(t.status == "done" for t in tasks.values())
    assert tasks[1].reused and tasks[2].reused and tasks[5].reused and not tasks[3].reused
    assert tasks[4].result_json == json.dumps("d<b<>,c<a<>>>")
    events = [e.type for e in store.events(run_id)]
    assert "run_resumed" in events and events[-1] == "run_finished"

    again = cli(env, "runs", "resume", run_id)
    assert again.returncode == 1 and "already finished" in again.stderr

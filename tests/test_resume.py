"""A run killed with SIGKILL mid-way resumes with `perfsmith runs resume` and finishes
without executing any completed task a second time (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

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
            {"planner": [PLAN], "joiner": ["Thought: all steps ran\nAction: Finish(steps done)"]}
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
        [*PERFSMITH, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
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


KERNELS = Path(__file__).resolve().parents[1] / "examples" / "kernels"
KERNEL_PLAN = """\
Thought: read the problem, propose a kernel, verify it.
1. read_problem()
2. propose(strategy="fuse", feedback=$1)
3. verify(candidate=$2)
join()
"""


def _kill_when(proc: subprocess.Popen[str], store: RunStore, tool: str, status: str) -> str:
    """SIGKILL the CLI once the task calling ``tool`` has ``status``; the run's id."""
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, f"the run never had {tool} {status}"
        runs = store.list_runs()
        if runs and any(t.tool == tool and t.status == status for t in store.tasks(runs[0].id)):
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return runs[0].id


@pytest.mark.slow(seconds=30)
def test_a_killed_kernel_run_resumes_reusing_its_proposal(tmp_path: Path) -> None:
    """kill -9 while the kernel is verified; `runs resume` verifies it once more and ends
    the run with its verdict and report: the proposal is reused, not asked for again."""
    # the example kernel: its build is shared with the other tests that verify it
    good = (KERNELS / "cpp" / "softmax.py").read_text()
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "planner": [KERNEL_PLAN],
                "propose": [f"```python\n{good}```"],
                "joiner": ["Thought: verified.\nAction: Finish(the kernel is verified)"],
            }
        )
    )
    db_url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home"), "PERFSMITH_DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [
            *PERFSMITH,
            "kernel",
            "optimize",
            str(KERNELS / "softmax.py"),
            "--llm",
            f"scripted:{script}",
            "--sandbox",
            "process",
            # the kernel and its verdict are what is resumed: torch's compiler stays out
            "--no-compiler",
            "--eager-only",
            "--verify-rounds",
            "5",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = RunStore(Database(db_url))
    run_id = _kill_when(proc, store, "verify", "running")
    assert store.get_run(run_id).status == "running"  # as the kill left it

    resumed = cli(env, "runs", "resume", run_id, "--json", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id
    [candidate] = result["candidates"]
    assert candidate["compiled"] and candidate["verdict"] in ("faster", "same", "slower")
    assert Path(result["report"]).is_file()
    row = store.get_run(run_id)
    assert row.status == "done" and row.answer == "the kernel is verified"
    tasks = {t.tool: t for t in store.tasks(run_id)}
    assert tasks["propose"].reused and tasks["read_problem"].reused
    assert tasks["verify"].status == "done" and not tasks["verify"].reused
    events = [e.type for e in store.events(run_id)]
    assert "run_resumed" in events and events[-1] == "run_finished"


def test_a_killed_demo_resumes_with_its_own_plan_and_model(tmp_path: Path) -> None:
    """The demo stores no LLM: its resume rebuilds the demo's own plan and joiner."""
    db_url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home"), "PERFSMITH_DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [*PERFSMITH, "demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    store = RunStore(Database(db_url))
    run_id = _kill_when(proc, store, "time_snippet", "done")
    resumed = cli(env, "runs", "resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert out["status"] == "done" and "fastest" in out["answer"].lower()
    tasks = store.tasks(run_id)
    assert any(t.reused for t in tasks) and all(t.status == "done" for t in tasks)

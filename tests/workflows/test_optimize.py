"""`perfsmith optimize` end to end: a scripted planner and proposer, the real sandbox and
verifiers, storage, the report, the diff and --apply."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from perfsmith.storage.db import Database
from perfsmith.storage.models import Candidate, Measurement, Task
from tests.cli_runner import cli
from tests.conftest import TORCH_THREADS
from tests.servers import SLOW  # decisively slower than the reference, even under load

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

PLAN = """\
Thought: profile and read the function, propose three rewrites at once, verify each.
1. profile()
2. propose(strategy="algorithm", feedback=$1)
3. propose(strategy="builtins")
4. propose(strategy="data structure")
5. verify(candidate=$2)
6. verify(candidate=$3)
7. verify(candidate=$4)
8. read_source()
join()
"""
WRONG = (EXAMPLES / "dupes" / "wrong_sorted.py").read_text()
FAST = (EXAMPLES / "dupes" / "fast_set.py").read_text()


def fence(code: str) -> str:
    return f"Here you go:\n```python\n{code}```\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    work = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "dupes", work)
    return work


def script(tmp_path: Path, proposals: list[str]) -> Path:
    path = tmp_path / "script.json"
    path.write_text(
        json.dumps(
            {
                "planner": [PLAN],
                "propose": proposals,
                "joiner": ["Thought: verified.\nAction: Finish(the set-based candidate wins)"],
            }
        )
    )
    return path


def scripted_optimize(project: Path, spec: Path) -> list[str]:
    """`optimize` on the dupes example with the scripted model, in the process sandbox."""
    return [
        "optimize",
        f"{project}/dupes.py::find_duplicates",
        "--inputs",
        f"{project}/inputs.py::generate",
        "--workload",
        f"{project}/workload.py::run",
        "--llm",
        f"scripted:{spec}",
        "--backend",
        "process",
    ]


def env_for(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")}


@pytest.mark.slow(seconds=25)
def test_the_faster_candidate_wins_the_wrong_one_is_rejected_and_apply_rewrites(
    tmp_path: Path, project: Path
) -> None:
    spec = script(tmp_path, [fence(WRONG), fence(SLOW), fence(FAST)])
    original = (project / "dupes.py").read_text()
    args = [
        *scripted_optimize(project, spec),
        "--verify-rounds",
        "6",
        "--report-dir",
        str(tmp_path / "report"),
        "--json",
    ]
    done = cli(env_for(tmp_path), *args, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    verdicts = {c["origin"]: c for c in result["candidates"]}
    assert len(result["candidates"]) == 3
    wrong = [c for c in result["candidates"] if c["verdict"] == "incorrect"]
    assert len(wrong) == 1 and wrong[0]["failure"]
    assert "input" in wrong[0]["failure"]
    assert result["best"] is not None and result["best"]["speedup"] > 1.5
    assert "set()" in result["best"]["source"]
    assert "+    seen: set[str] = set()" in result["diff"]
    assert (project / "dupes.py").read_text() == original  # no --apply: untouched
    report = Path(result["report"])
    assert report.is_file() and (report.parent / "report.html").is_file()
    text = report.read_text()
    assert "incorrect" in text and "faster" in text
    assert "| 1.1 profile | done |" in text and "| 1.8 read_source | done |" in text
    # the workload's profile: the target's hottest line and the call tree through it
    assert "Hottest lines (line_profiler)" in text and "if word in seen:" in text
    assert "Call tree (pyinstrument)" in text and "find_duplicates  dupes.py:" in text
    assert len(verdicts) == 3
    # stored: every candidate with its source and verdict
    db = Database(f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}")
    with db.session() as s:
        rows = s.scalars(select(Candidate).where(Candidate.run_id == result["run_id"])).all()
        assert sorted(r.verdict or "" for r in rows) == sorted(
            c["verdict"] for c in result["candidates"]
        )
        assert all(r.source for r in rows)
    db.close()

    done = cli(env_for(tmp_path), *args[:-1], "--apply", timeout=600)
    assert done.returncode == 0, done.stderr
    assert "applied" in done.stdout
    assert "set()" in (project / "dupes.py").read_text()


def test_user_candidates_without_an_llm_and_duplicates_verified_once(
    tmp_path: Path, project: Path
) -> None:
    (project / "copy.py").write_text(
        "# the same code, reformatted\n" + FAST.replace("    ", "    ")
    )
    done = cli(
        env_for(tmp_path),
        "optimize",
        f"{project}/dupes.py::find_duplicates",
        "--inputs",
        f"{project}/inputs.py::generate",
        "--candidate",
        str(project / "fast_set.py"),
        "--candidate",
        str(project / "copy.py"),
        "--candidate",
        str(project / "wrong_sorted.py"),
        "--llm",
        "none",
        "--backend",
        "process",
        "--verify-rounds",
        "6",
        "--json",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # no model: the catalogue's and ruff's candidates, then the user's (a copy of one
    # of them verified once)
    origins = [c["origin"] for c in result["candidates"]]
    assert [o for o in origins if o.startswith("user:")] == [
        "user:fast_set.py",
        "user:wrong_sorted.py",
    ]
    assert any(o.startswith("catalogue:") for o in origins), origins
    assert result["best"]["speedup"] > 1.5, result["best"]
    # the run is recorded like any other: its plan's tasks and its events
    shown = cli(env_for(tmp_path), "runs", "show", result["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] == "done"
    assert {"read_source", "rewrite", "ruff_fix", "verify"} <= {t["tool"] for t in run["tasks"]}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["{p}/missing.py::f"], 2, "does not exist"),
        (["{p}/dupes.py::nope"], 2, "defines no function 'nope'"),
        (["{p}/bad.py::f"], 2, "syntax error"),
        (
            [
                "{p}/dupes.py::find_duplicates",
                "--workload",
                "{p}/raising.py::run",
                "--llm",
                "none",
                "--candidate",
                "{p}/fast_set.py",
            ],
            1,
            "the workload",
        ),
        (
            ["{p}/dupes.py::find_duplicates", "--llm", "none", "--candidate", "{p}/other.py"],
            1,
            "does not define 'find_duplicates'",
        ),
        (
            ["{p}/dupes.py::find_duplicates", "--llm", "http://127.0.0.1:9/v1", "--rounds", "1"],
            1,
            "failed",
        ),
        (
            [
                "{p}/dupes.py::find_duplicates",
                "--llm",
                "none",
                "--candidate",
                "{p}/fast_set.py",
                "--inputs",
                "{p}/garbage.py::generate",
            ],
            1,
            "generator",
        ),
    ],
)
def test_bad_input_is_a_clear_error_and_touches_nothing(
    tmp_path: Path, project: Path, args: list[str], code: int, message: str
) -> None:
    (project / "bad.py").write_text("def f(:\n")
    (project / "other.py").write_text("def something_else():\n    return 1\n")
    (project / "garbage.py").write_text("def generate(seed):\n    return 42\n")
    (project / "raising.py").write_text("def run():\n    raise RuntimeError('broken workload')\n")
    before = {p.name: p.read_text() for p in project.iterdir() if p.is_file()}
    done = cli(
        env_for(tmp_path),
        "optimize",
        *[a.format(p=project) for a in args],
        "--backend",
        "process",
        timeout=300,
    )
    assert done.returncode == code, (done.stdout, done.stderr)
    assert message in done.stderr, done.stderr
    assert {p.name: p.read_text() for p in project.iterdir() if p.is_file()} == before


@pytest.mark.slow(seconds=35)
def test_end_to_end_with_the_local_model_over_its_openai_compatible_server(
    tmp_path: Path, project: Path
) -> None:
    """The 135M model plans (under the plan grammar, sent through the server) and
    proposes; whatever it proposes gets a stored verdict."""
    import subprocess
    import sys
    import time

    import httpx

    from tests.inference.test_server import free_port

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfsmith.cli",
            "serve-model",
            "--port",
            str(port),
            "--threads",
            str(TORCH_THREADS),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        env = {
            **env_for(tmp_path),
            "PERFSMITH_LLM_MODEL": "smollm2-135m",
            "PERFSMITH_LLM_SUPPORTS_GRAMMAR": "1",
        }
        done = cli(
            env,
            "optimize",
            f"{project}/dupes.py::find_duplicates",
            "--inputs",
            f"{project}/inputs.py::generate",
            "--workload",
            f"{project}/workload.py::run",
            "--llm",
            f"http://127.0.0.1:{port}/v1",
            "--rounds",
            "1",
            "--candidates",
            "2",
            "--verify-rounds",
            "6",
            "--backend",
            "process",
            "--json",
            timeout=900,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    db = Database(f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}")
    with db.session() as s:
        rows = s.scalars(select(Candidate).where(Candidate.run_id == result["run_id"])).all()
        producers = s.scalars(
            select(Task).where(
                Task.run_id == result["run_id"],
                Task.tool.in_(["propose", "rewrite", "ruff_fix"]),
                Task.status == "done",
            )
        ).all()
        assert producers, "no plan produced a candidate"
        assert rows and all(r.verdict in ("faster", "slower", "same", "incorrect") for r in rows)
    db.close()
    # a first run on the embedded model finds a real speedup and proves it
    assert result["best"] is not None, result["candidates"]
    assert result["best"]["speedup"] > 1.2


async def test_the_python_api_verifies_given_candidates(tmp_path: Path, project: Path) -> None:
    import perfsmith

    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    try:
        # no generator: the calls the workload makes are recorded and replayed
        result = await perfsmith.optimize(
            f"{project}/dupes.py::find_duplicates",
            llm=None,
            workload=f"{project}/workload.py::run",
            candidates=[project / "fast_set.py", project / "wrong_sorted.py"],
            database=db,
            verify_rounds=6,
        )
        with db.session() as s:
            metas = [m.meta for m in s.scalars(select(Measurement)).all()]
    finally:
        db.close()
    # no model: the catalogue's candidates are measured beside the user's, all on the
    # recorded calls
    assert metas and all(m["inputs"].startswith("3 calls recorded while") for m in metas)
    assert isinstance(result, perfsmith.OptimizeResult)
    assert result.best is not None and result.best.verdict == "faster"
    user = {c.origin: c.verdict for c in result.candidates if c.origin.startswith("user:")}
    assert user == {"user:fast_set.py": "faster", "user:wrong_sorted.py": "incorrect"}
    # the Python API writes the report like the CLI; nothing is applied unless asked
    assert result.report is not None and result.report.is_file() and not result.applied


@pytest.mark.slow(seconds=30)
def test_a_killed_run_resumes_without_reverifying_verified_candidates(
    tmp_path: Path, project: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from perfsmith.storage.models import Measurement, Run

    # three correct candidates: each verification leaves a measurement, so a second
    # verification of the same candidate would show as a second row
    counting = (
        "def find_duplicates(words: list[str]) -> list[str]:\n"
        "    counts: dict[str, int] = {}\n"
        "    dupes = []\n"
        "    for word in words:\n"
        "        seen = counts.get(word, 0)\n"
        "        if seen == 1:\n"
        "            dupes.append(word)\n"
        "        counts[word] = seen + 1\n"
        "    return dupes\n"
    )
    spec = script(tmp_path, [fence(FAST), fence(SLOW), fence(counting)])
    env = env_for(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfsmith.cli",
            "optimize",
            f"{project}/dupes.py::find_duplicates",
            "--inputs",
            f"{project}/inputs.py::generate",
            "--llm",
            f"scripted:{spec}",
            "--backend",
            "process",
            "--verify-rounds",
            "10",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}"
    verified_before: dict[int, int] = {}
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if not (tmp_path / "home" / "perfsmith.db").exists():
                continue
            db = Database(url)
            with db.session() as s:
                rows = s.scalars(select(Candidate).where(Candidate.verdict.is_not(None))).all()
                verified_before = {r.id: len(r.measurements) for r in rows}
            db.close()
            if verified_before:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 1 <= len(verified_before) < 3
    db = Database(url)
    with db.session() as s:
        run_id = s.scalars(select(Run.id)).one()
    db.close()

    done = cli(env, "runs", "resume", run_id, "--json", timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["run_id"] == run_id
    assert sorted(c["verdict"] for c in result["candidates"]) == ["faster", "faster", "slower"]
    assert result["best"]["origin"].startswith("llm:")
    db = Database(url)
    with db.session() as s:
        rows = s.scalars(select(Candidate).where(Candidate.run_id == run_id)).all()
        assert len(rows) == 3 and all(r.verdict for r in rows)
        for row in rows:
            count = s.scalar(
                select(func.count())
                .select_from(Measurement)
                .where(Measurement.candidate_id == row.id)
            )
            # one verification each: those verified before the kill were not verified again
            assert count == 1
            if row.id in verified_before:
                assert verified_before[row.id] == 1
        assert s.scalars(select(Run.status).where(Run.id == run_id)).one() == "done"
    db.close()


DEGENERATE_PLANS = [
    # what a small model writes: the same call six times, then proposals without a strategy
    "".join(f"{i}. profile()\n" for i in range(1, 7)) + "join()\n",
    '1. read_source()\n2. propose(strategy="")\n3. propose(strategy="")\njoin()\n',
]


async def test_degenerate_plans_fall_back_to_the_default_plan_and_the_catalogue_wins(
    tmp_path: Path, project: Path
) -> None:
    """Two plans that fall short are replanned by the guard (no joiner call, no replan
    spent); the default plan then runs every candidate source, and perfsmith's own
    rewrite is verified faster although the model proposes nothing usable."""
    import perfsmith
    from perfsmith.llm.scripted import ScriptedChatModel
    from perfsmith.storage.runs import RunStore

    model = ScriptedChatModel(
        {
            "planner": DEGENERATE_PLANS,
            "propose": ["I cannot help with that."] * 3,
            "joiner": ["Thought: done.\nAction: Finish(done)"] * 3,
        }
    )
    db = Database(f"sqlite:///{tmp_path / 'guard.db'}")
    try:
        result = await perfsmith.optimize(
            f"{project}/dupes.py::find_duplicates",
            llm=model,
            workload=f"{project}/workload.py::run",
            inputs=f"{project}/inputs.py::generate",
            rounds=1,
            database=db,
            verify_rounds=6,
            report_dir=tmp_path / "report",
        )
        events = RunStore(db).events(result.run_id)
    finally:
        db.close()
    kinds = [e.type for e in events]
    shorts = [e.payload["reason"] for e in events if e.type == "plan_short"]
    assert len(shorts) == 2 and all("produced no candidate" in r for r in shorts)
    # the second plan's strategy was refused at parse time; the reason names the values
    assert "strategy" in shorts[1] and "algorithm" in shorts[1]
    assert kinds.count("plan_default") == 1
    # the joiner was asked once: after the default plan, not after the short ones
    assert [o.purpose for _, o in model.calls].count("joiner") == 1
    # the model's proposals were guided: the catalogue's findings name the slow lines
    prompts = [m[-1].content for m, o in model.calls if o.purpose == "propose"]
    assert prompts and all("Slow spots found" in p and "`word in seen`" in p for p in prompts)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "## Plans that fell short" in report and "the default plan ran" in report
    assert "| catalogue: grown-list-membership-to-set | faster |" in report
    assert result.best is not None and result.best.origin.startswith("catalogue:")
    assert result.best.speedup is not None and result.best.speedup > 1.2
    origins = {c.origin for c in result.candidates}
    assert "catalogue:grown-list-membership-to-set" in origins
    # the JSON names each candidate's source: the rule, the ruff rules, the strategy
    best = result.as_json()["candidates"][result.best.id - 1]
    assert best["source"] == {"kind": "catalogue", "rules": ["grown-list-membership-to-set"]}
    # the answer says what was found in perfsmith's words
    assert result.answer.startswith(f"best: candidate {result.best.id} (catalogue:")


def test_progress_is_plain_lines_as_it_happens_when_the_output_is_a_log(
    tmp_path: Path, project: Path
) -> None:
    """`perfsmith optimize > log`: one line per step (no live table, nothing wrapped)."""
    import re

    spec = script(tmp_path, [fence(WRONG), fence(SLOW), fence(FAST)])
    done = cli(
        env_for(tmp_path), *scripted_optimize(project, spec), "--verify-rounds", "4", timeout=600
    )
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("[")]
    assert re.match(r"\[\s*\d+\.\ds\] run [0-9a-f]{32} started$", progress[0]), progress[:3]
    assert re.match(r"\[\s*\d+\.\ds\] round 1: planning$", progress[1]), progress[:3]
    verified = [line for line in progress if re.search(r"round 1 \$\d+ verify done", line)]
    assert len(verified) == 3
    assert any("joiner: finish" in line for line in progress)
    assert "best: candidate" in done.stdout.splitlines()[-2] + done.stdout.splitlines()[-1]
    # the steps before planning are log lines on stderr
    assert "profiling the workload" in done.stderr and "planning with" in done.stderr


async def test_a_failing_planner_and_joiner_do_not_end_the_run(
    tmp_path: Path, project: Path
) -> None:
    """A planner that fails (a prompt past a small model's context, say) leaves the
    default plan to run; a failing joiner ends the planning, not the run."""
    import perfsmith
    from perfsmith.errors import LLMError
    from perfsmith.llm.base import ChatMessage, GenerationOptions
    from perfsmith.llm.scripted import ScriptedChatModel
    from perfsmith.storage.runs import RunStore

    def too_long(messages: list[ChatMessage], options: GenerationOptions) -> str:
        raise LLMError("the prompt has 2444 tokens; the context is 2048 tokens", refused=True)

    # the planner and the joiner are refused, as a small model's server refuses a prompt
    # past its context (an endpoint that cannot be reached still ends the run)
    model = ScriptedChatModel(
        {"planner": [too_long], "joiner": [too_long], "propose": ["no code"] * 3}
    )
    db = Database(f"sqlite:///{tmp_path / 'failing.db'}")
    try:
        result = await perfsmith.optimize(
            f"{project}/dupes.py::find_duplicates",
            llm=model,
            inputs=f"{project}/inputs.py::generate",
            rounds=1,
            database=db,
            verify_rounds=6,
        )
        events = RunStore(db).events(result.run_id)
    finally:
        db.close()
    defaults = [e.payload["reason"] for e in events if e.type == "plan_default"]
    assert len(defaults) == 1 and defaults[0].startswith("the planner failed (")
    joins = [e.payload for e in events if e.type == "join"]
    assert joins[-1]["action"] == "finish" and "the joiner failed" in joins[-1]["text"]
    assert result.best is not None and result.best.origin.startswith("catalogue:")

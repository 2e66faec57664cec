"""A night's batch for the end-to-end tests: two repositories, two functions and a kernel
suite on CPU, model-free (perfsmith's own rewrites and the candidates given), sized to
finish in minutes."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from perfsmith.storage.models import BatchJob

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOBS = 6  # the suite is a job per problem


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)


def _repo(folder: Path) -> Path:
    shutil.copytree(EXAMPLES / "repo", folder)
    _git(folder, "init", "-q")
    _git(folder, "add", "-A")
    _git(folder, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return folder


def write_night(folder: Path, *, concurrency: int = 3, kernels: bool = True) -> Path:
    """The batch file (and the repositories and suite it names) under ``folder``; without
    ``kernels``, the repositories and functions only (JOBS - 2 jobs)."""
    _repo(folder / "textstats-a")
    _repo(folder / "textstats-b")
    suite = folder / "suite"
    suite.mkdir()
    # two problems: one with a kernel to verify, one with none (no model tonight)
    shutil.copy(EXAMPLES / "kernels" / "softmax.py", suite / "softmax.py")
    shutil.copy(EXAMPLES / "kernels" / "gelu.py", suite / "gelu.py")
    cands = EXAMPLES / "repo_candidates"
    repo_candidates = (
        f'candidates = {{ "textstats/core.py::char_histogram" = ["{cands}/char_histogram.py"], '
        f'"textstats/core.py::unique_words" = ["{cands}/unique_words.py"] }}'
    )
    # the example project's own tests: this environment's pytest plugins (3 s of imports
    # at every start) are not the project's
    command = (
        f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"
    )
    text = f"""
[batch]
name = "night"
concurrency = {concurrency}
llm = "none"
retries = 2

[[repo]]
path = "textstats-a"
command = "{command}"
top = 1
branch = "faster-a"
verify_rounds = 4
{repo_candidates}

[[repo]]
path = "textstats-b"
command = "{command}"
top = 1
branch = "faster-b"
verify_rounds = 4
{repo_candidates}

[[function]]
target = "{EXAMPLES}/dupes/dupes.py::find_duplicates"
inputs = "{EXAMPLES}/dupes/inputs.py::generate"
candidates = ["{EXAMPLES}/dupes/fast_set.py"]
verify_rounds = 4

[[function]]
target = "{EXAMPLES}/strings/strings.py::render_rows"
inputs = "{EXAMPLES}/strings/inputs.py::generate"
verify_rounds = 4
"""
    if kernels:
        text += f"""
[[kernels]]
suite = "suite"
device = "cpu"
backend = "cpp"
k = 1
compiler = false  # gelu: nothing to verify (a job that fails)
versus_compile = false
candidates = {{ "softmax.py" = ["{EXAMPLES}/kernels/cpp/softmax.py"] }}
"""
    path = folder / "night.toml"
    path.write_text(text, encoding="utf-8")
    return path


def submit(env: dict[str, str], night: Path) -> str:
    """`perfsmith batch submit` as a user runs it; the batch's id."""
    import json

    from tests.cli_runner import cli

    done = cli(env, "batch", "submit", str(night), "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["id"])


def work_in_background(env: dict[str, str], batch_id: str, *args: str) -> subprocess.Popen[str]:
    """`perfsmith batch run` started as a user starts it, left running."""
    from tests.cli_runner import PERFSMITH

    return subprocess.Popen(
        [*PERFSMITH, "batch", "run", batch_id, "--backend", "process", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_jobs(
    db_url: str,
    batch_id: str,
    ready: Callable[[list[BatchJob]], bool],
    worker: subprocess.Popen[str],
) -> None:
    """Poll the queue until ``ready`` holds of the batch's jobs (the worker still up)."""
    from perfsmith.storage.batches import BatchStore
    from perfsmith.storage.db import Database

    db = Database(db_url)
    deadline = time.monotonic() + 600
    try:
        while not ready(BatchStore(db).get_batch(batch_id).jobs):
            assert worker.poll() is None, worker.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the jobs did not get under way in time"
            time.sleep(0.2)
    finally:
        db.close()


def check_night(db_url: str, batch_id: str, *, kernels: bool = True) -> dict[str, object]:
    """What every way of working the night must give: each job ended with its results,
    no candidate verified twice; returns the jobs by name."""
    from sqlalchemy import func, select

    from perfsmith.storage.batches import BatchStore
    from perfsmith.storage.db import Database
    from perfsmith.storage.models import Candidate, Measurement

    db = Database(db_url)
    batch = BatchStore(db).get_batch(batch_id)
    jobs = {j.name: j for j in batch.jobs}
    assert len(jobs) == (JOBS if kernels else JOBS - 2), list(jobs)
    assert batch.status == "ended", batch.status
    for name, job in jobs.items():
        assert job.status in ("done", "failed"), (name, job.status, job.error)
        assert job.run_id is not None, name
    for name in ("textstats-a", "textstats-b"):
        summary = jobs[name].summary
        assert jobs[name].status == "done", jobs[name].error
        # the hottest function's candidate verified and committed to the job's branch
        assert summary["speedup"] > 1 and summary["ci"][0] > 1, summary
        assert summary["branch"] in ("faster-a", "faster-b") and len(summary["commits"]) == 1
    functions = [j for n, j in jobs.items() if n.endswith(("find_duplicates", "render_rows"))]
    assert len(functions) == 2
    assert all(j.status == "done" and j.summary["speedup"] > 1 for j in functions)
    if kernels:
        assert jobs["suite/softmax"].status == "done"
        assert jobs["suite/softmax"].summary["correct"] >= 1
        # no model and no candidate for this problem: failed, with its reason
        assert jobs["suite/gelu"].status == "failed"
        assert "nothing to verify" in (jobs["suite/gelu"].error or "")
    with db.session(readonly=True) as s:
        # a candidate verified twice would be stored twice (its verdict and measurements
        # again): every (run, source) once, every measurement kind once per candidate
        twice = s.execute(
            select(Candidate.run_id, Candidate.source_hash)
            .group_by(Candidate.run_id, Candidate.source_hash)
            .having(func.count() > 1)
        ).all()
        assert twice == []
        measured_twice = s.execute(
            select(Measurement.candidate_id, Measurement.kind, Measurement.subject)
            .group_by(Measurement.candidate_id, Measurement.kind, Measurement.subject)
            .having(func.count() > 1)
        ).all()
        assert measured_twice == []
    db.close()
    return dict(jobs)

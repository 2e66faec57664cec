"""The local pool, end to end through the CLI: a night's batch submitted, `batch run`
killed with -9 in the middle, `batch resume` finishing it, the morning report."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from perfsmith.storage.batches import BatchStore
from perfsmith.storage.db import Database
from tests.batch.night import (
    JOBS,
    check_night,
    submit,
    wait_for_jobs,
    work_in_background,
    write_night,
)
from tests.cli_runner import cli


@pytest.mark.slow(seconds=75)
def test_a_night_survives_kill_9_and_resumes_without_redoing_work(tmp_path: Path) -> None:
    night = write_night(tmp_path)
    db_url = f"sqlite:///{tmp_path / 'night.db'}"
    env = {**os.environ, "PERFSMITH_DATABASE_URL": db_url, "PERFSMITH_HOME": str(tmp_path)}
    batch_id = submit(env, night)

    worker = work_in_background(env, batch_id)
    # kill it once a job has ended and others are under way with their runs started
    wait_for_jobs(
        db_url,
        batch_id,
        lambda jobs: (
            any(j.status in ("done", "failed") for j in jobs)
            and any(j.status == "running" and j.run_id for j in jobs)
        ),
        worker,
    )
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    db = Database(db_url)
    store = BatchStore(db)
    interrupted = {j.name for j in store.get_batch(batch_id).jobs if j.status == "running"}
    assert interrupted

    done = cli(env, "batch", "resume", batch_id, "--backend", "process", timeout=900)
    # a job failed (the problem with nothing to verify): exit 1, every job ended
    assert done.returncode == 1, done.stderr[-3000:]
    jobs = check_night(db_url, batch_id)
    # the jobs the kill interrupted were taken up again: a second attempt, their runs
    # resumed (the same run), not begun anew
    for name in interrupted:
        job = jobs[name]
        assert job.attempts == 2, (name, job.attempts)  # type: ignore[attr-defined]

    report = tmp_path / "report.html"
    done = cli(env, "batch", "report", batch_id, "--format", "html", "--out", str(report))
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert html.count("<svg") == 2 and "fast_1" in html
    for name in jobs:
        assert name in html
    markdown = cli(env, "batch", "report", batch_id).stdout
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + JOBS + 2  # the jobs' header and rows, the suite's header and row
    assert "| suite | 2 | 0.50 |" in markdown or "| suite | 2 | 0.00 |" in markdown
    assert "nothing to verify" in markdown
    db.close()


def test_batch_commands_refuse_bad_input_clearly(tmp_path: Path) -> None:
    env = {**os.environ, "PERFSMITH_DATABASE_URL": f"sqlite:///{tmp_path / 'b.db'}"}
    huge = tmp_path / "huge.toml"
    huge.write_text("[[function]]\ntarget = 'a.py::f'\n" + "# pad\n" * 400_000)
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    for path, message in (
        (huge, "bytes"),
        (deep, "nested too deeply"),
        (binary, "cannot read it"),
        (tmp_path / "missing.toml", "No such file"),
    ):
        done = cli(env, "batch", "submit", str(path))
        assert done.returncode == 2, (path, done.stderr)
        assert message in done.stderr and "nothing was submitted" in done.stderr
    for args in (
        ("status", "nope"),
        ("report", "nope"),
        ("cancel", "nope"),
        ("resume", "nope", "--queue-only"),
        ("run", "nope"),
    ):
        done = cli(env, "batch", *args)
        assert done.returncode == 1 and "no batch with id 'nope'" in done.stderr, (args, done)
    done = cli(env, "batch", "resume", "x", "--until", "noon")
    assert done.returncode == 2 and "neither HH:MM" in done.stderr
    done = cli(env, "batch", "report", "x", "--format", "pdf")
    assert done.returncode == 2 and "md or html" in done.stderr
    done = cli(env, "batch", "status")
    assert done.returncode == 0 and "no batches yet" in done.stdout

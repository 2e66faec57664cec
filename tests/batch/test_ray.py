"""Batches on a real Ray cluster: a head node and a second node on this machine, a night's
batch (its repositories and functions) across both, the second node killed mid-batch.
Every job ends with its results, the lost ones taken up again on the node left, no
candidate verified twice."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.batch.night import check_night, submit, wait_for_jobs, work_in_background, write_night
from tests.servers import free_port

RAY = str(Path(sys.executable).with_name("ray"))
MARK = "PERFSMITH_TEST_CLUSTER_NODE"


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rindex(b")") + 2 :].split()[1])


def _processes_of(mark: str) -> list[int]:
    """The processes of one node: those that inherited the mark from its `ray start`,
    and their descendants (Ray starts its agents with an environment of its own)."""
    needle = f"{MARK}={mark}".encode()
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            parents[pid] = _ppid(pid)
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.add(pid)
        except (OSError, ValueError):
            continue
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in found} - found
        found |= children
        grew = bool(children)
    return sorted(found)


def _kill(mark: str) -> int:
    pids = _processes_of(mark)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    nodes: list[str]  # each node's mark


def _start(env: dict[str, str], mark: str, *args: str) -> None:
    done = subprocess.run(
        [RAY, "start", "--disable-usage-stats", "--object-store-memory=200000000", *args],
        env={**env, MARK: mark},
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    port = free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PERFSMITH_HOME": str(tmp_path),
        # Ray keeps state under ~/.ray (an auth token that ray.init() of a local cluster
        # writes, which a cluster started here does not expect): a home of its own
        "HOME": str(tmp_path),
        # a lost node is declared dead after 3 missed heartbeats of 1 s, not 5 of 3 s
        "RAY_health_check_period_ms": "1000",
        "RAY_health_check_failure_threshold": "3",
    }
    head, second = f"head-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    try:
        # one core on the head, two on the second node: most jobs start there
        _start(env, head, "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false")
        _start(env, second, f"--address=127.0.0.1:{port}", "--num-cpus=2")
        yield Cluster(f"127.0.0.1:{port}", env, [head, second])
    finally:
        for mark in (second, head):
            _kill(mark)


@pytest.mark.slow(seconds=40)
def test_a_night_on_two_ray_nodes_survives_losing_one(tmp_path: Path, cluster: Cluster) -> None:
    # the repositories and functions: the kernel suite's jobs take the same path (the
    # local pool's night has them)
    night = write_night(tmp_path, kernels=False)
    db_url = f"sqlite:///{tmp_path / 'night.db'}"
    env = {**cluster.env, "PERFSMITH_DATABASE_URL": db_url}
    batch_id = submit(env, night)
    driver = work_in_background(env, batch_id, "--ray", cluster.address)
    # kill the second node with three jobs under way
    wait_for_jobs(
        db_url,
        batch_id,
        lambda jobs: sum(1 for j in jobs if j.status == "running" and j.run_id) == 3,
        driver,
    )
    assert _kill(cluster.nodes[1]) > 0
    _, stderr = driver.communicate(timeout=900)
    assert driver.returncode == 0, stderr[-3000:]
    jobs = check_night(db_url, batch_id, kernels=False)
    # the second node held two of the three running jobs (its two cores): they were lost
    # with it, taken up again on the head, their runs resumed
    again = [j for j in jobs.values() if j.attempts == 2]  # type: ignore[attr-defined]
    assert len(again) >= 2, [(n, j.attempts, j.error) for n, j in jobs.items()]  # type: ignore[attr-defined]
    assert "its Ray task was lost" in stderr

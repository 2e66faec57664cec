"""Shared fixtures: databases (SQLite always, PostgreSQL when PERFSMITH_TEST_PG_URL is set)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from perfsmith.storage.db import Database, normalize_url

PG_URL = os.environ.get("PERFSMITH_TEST_PG_URL")

# Parallel workers (`make test` runs pytest-xdist) share the machine's cores: each
# worker's torch, and what it starts, gets its share. Oversubscribed OpenMP threads spin
# against each other and run several times slower than one thread each.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TORCH_THREADS = max(1, min(2, (os.cpu_count() or 1) // _WORKERS))
if _WORKERS > 1:  # before torch is imported anywhere in this process
    os.environ.setdefault("OMP_NUM_THREADS", str(TORCH_THREADS))
# real `perfsmith serve` processes for the API and UI tests
pytest_plugins = ["tests.servers"]


def _seconds(item: pytest.Item) -> float:
    """What a test is expected to take on 2 busy cores: its ``slow`` mark's seconds (2
    if it names none: whole modules are marked), 0 for the rest."""
    mark = item.get_closest_marker("slow")
    if mark is None:
        return 0.0
    return float(mark.kwargs.get("seconds", mark.args[0] if mark.args else 2))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Parallel workers end together: pytest-xdist's worksteal hands each worker an
    equal, contiguous share of the list and lets the first one done take the back half
    of another's queue. So the slow tests are shared out longest first (each to the
    share with the least so far) and run at the start of their share, the quick ones
    after them, where they balance the end."""
    if _WORKERS < 2 or len(items) < 2 * _WORKERS:
        return
    slow = sorted((i for i in items if _seconds(i) > 0), key=_seconds, reverse=True)
    quick = [i for i in items if _seconds(i) == 0]
    shares: list[list[pytest.Item]] = [[] for _ in range(_WORKERS)]
    loads = [0.0] * _WORKERS
    for item in slow:
        least = loads.index(min(loads))
        shares[least].append(item)
        loads[least] += _seconds(item)
    # worksteal's shares: len(items) // workers each, the remainder to the last
    sizes = [len(items) // _WORKERS] * _WORKERS
    sizes[-1] += len(items) - sum(sizes)
    ordered: list[pytest.Item] = []
    for share, size in zip(shares, sizes, strict=True):
        take = max(0, size - len(share))
        ordered += share + quick[:take]
        quick = quick[take:]
    items[:] = ordered + quick


def pytest_report_header() -> str:
    if PG_URL:
        return f"postgres tests: against {PG_URL.split('@')[-1]}"
    return "postgres tests: skipped (PERFSMITH_TEST_PG_URL is unset; .ci/run sets it)"


def _precompile_header(folder: Path) -> None:
    import asyncio

    from perfsmith.verifiers.kernel.pch import precompiled_header
    from perfsmith.verifiers.kernel.verify import CPU_FLAGS

    asyncio.run(precompiled_header(folder, CPU_FLAGS))


@pytest.fixture(scope="session", autouse=True)
def _kernel_build_cache(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Path]:
    """One build cache for the session's kernel tests (a C++ build takes tens of
    seconds); PERFSMITH_TEST_CACHE_DIR keeps it for a benchmark run afterwards."""
    given = os.environ.get("PERFSMITH_TEST_CACHE_DIR")
    if given:
        folder = Path(given)
    elif _WORKERS > 1:  # one cache for all the parallel workers: each kernel built once
        folder = tmp_path_factory.getbasetemp().parent / "kernel-cache"
        folder.mkdir(exist_ok=True)
    else:
        folder = tmp_path_factory.mktemp("kernel-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSMITH_KERNEL_CACHE_DIR", str(folder))
        # the precompiled torch header too, also for tests with a build cache of their own
        mp.setenv("PERFSMITH_KERNEL_PCH_DIR", str(folder / "pch"))
        if any("kernel" in item.nodeid for item in request.session.items):
            # the precompiled torch header, built while the first tests run (another
            # worker, or a build, that needs it waits for it under its lock)
            threading.Thread(target=_precompile_header, args=(folder / "pch",), daemon=True).start()
        yield folder


@pytest.fixture(scope="session", autouse=True)
def _timing_slot_per_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test worker times under its own slot: a test's verdicts are what it checks,
    and the workers' share of the cores is fixed (the slot itself has its own tests)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSMITH_TIMING_SLOT", str(tmp_path_factory.getbasetemp() / "timing.slot"))
        yield


@pytest.fixture(scope="session")
def loaded() -> Any:
    """The embedded model (a ``perfsmith.inference.models.LoadedModel``), loaded once per
    test process (from the user's cache after the first conversion)."""
    import torch

    from perfsmith.inference import models

    torch.set_num_threads(TORCH_THREADS)
    return models.load("embedded")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the user's real perfsmith data or config."""
    monkeypatch.setenv("PERFSMITH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERFSMITH_CONFIG", str(tmp_path / "perfsmith.toml"))
    for var in (
        "PERFSMITH_DATABASE_URL",
        "PERFSMITH_LLM_BASE_URL",
        "PERFSMITH_LLM_MODEL",
        "PERFSMITH_LLM",
    ):
        monkeypatch.delenv(var, raising=False)


def fresh_pg_database() -> str:
    """A new, empty database on the test server, so tests never see each other's rows."""
    assert PG_URL is not None
    name = f"perfsmith_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'perfsmith.db'}"
    if not PG_URL:
        pytest.skip("PERFSMITH_TEST_PG_URL is unset: no PostgreSQL server to test against")
    return fresh_pg_database()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'perfsmith.db'}"

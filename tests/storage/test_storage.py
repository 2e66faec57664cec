"""Storage against real SQLite and (when PERFSMITH_TEST_PG_URL is set) real PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from perfsmith.engine.recorder import RunRecorder
from perfsmith.errors import RunNotFoundError, StorageError
from perfsmith.events import PlanFinished, TaskParsed
from perfsmith.storage.db import Database, normalize_url
from perfsmith.storage.models import Artifact, Candidate, Event, Measurement
from perfsmith.storage.runs import RunStore

TABLES = {
    "alembic_version",
    "api_tokens",
    "batch_jobs",
    "batches",
    "artifacts",
    "candidates",
    "events",
    "measurements",
    "plans",
    "runs",
    "tasks",
}


def test_migrations_create_every_table_and_are_idempotent(db: Database) -> None:
    assert set(db.tables()) >= TABLES
    db.upgrade()  # a second time changes nothing and does not fail
    assert set(db.tables()) >= TABLES


def test_the_schema_head_is_alembics_and_a_database_at_it_opens_without_alembic(
    db: Database,
) -> None:
    """`SCHEMA_HEAD` names the newest migration (a new one that forgets to move it fails
    here), and opening a database already at it does not load alembic (a fast CLI)."""
    import subprocess
    import sys

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from perfsmith.storage import db as db_module

    cfg = Config()
    cfg.set_main_option("script_location", str(db_module._MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == db_module.SCHEMA_HEAD
    assert db.schema_version() == db_module.SCHEMA_HEAD
    probe = (
        "import sys; from perfsmith.storage.db import Database; "
        f"Database({db.url!r}).close(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_processes_opening_a_new_database_at_once_all_succeed(db_url: str) -> None:
    """Several perfsmith processes (a run and `runs list`, say) opening a database nobody
    has migrated yet take turns: none fails with "table already exists"."""
    import subprocess
    import sys

    opener = (
        "import sys, time\n"
        "from perfsmith.storage.db import Database\n"
        "while time.time() < float(sys.argv[2]):\n"
        "    pass\n"
        "db = Database(sys.argv[1]); print(len(db.tables())); db.close()\n"
    )
    start_at = f"{__import__('time').time() + 3:.3f}"  # all begin together, after imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", opener, db_url, start_at],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err[-500:] for _, err in results]
    assert {int(out) for out, _ in results} == {len(TABLES)}


def test_runs_round_trip_and_list_with_filters(db: Database) -> None:
    store = RunStore(db)
    ids = [store.create_run(f"request {i}", config={"tools": ["m"]}) for i in range(3)]
    store.set_status(ids[1], "done", answer="42")
    run = store.get_run(ids[1])
    assert (run.status, run.answer, run.config) == ("done", "42", {"tools": ["m"]})
    assert {r.id for r in store.list_runs()} == set(ids)
    assert [r.id for r in store.list_runs(status="done")] == [ids[1]]
    assert len(store.list_runs(limit=2)) == 2
    with pytest.raises(RunNotFoundError, match="runs list"):
        store.get_run("nope")


async def test_events_are_append_only_and_ordered_across_recorders(db: Database) -> None:
    store = RunStore(db)
    run_id = store.create_run("r")
    first = RunRecorder(db, run_id)
    seen: list[int] = []
    first.listeners.append(lambda e: seen.append(e["seq"]))
    for i in range(50):
        first.emit(PlanFinished(round=1, tasks=i))
    await asyncio.to_thread(db.flush)
    second = RunRecorder(db, run_id)  # e.g. after a resume: continues the sequence
    second.emit(PlanFinished(round=1, tasks=50))
    await asyncio.to_thread(db.flush)
    events = store.events(run_id)
    assert [e.seq for e in events] == list(range(1, 52))
    assert [e.payload["tasks"] for e in events] == list(range(51))
    assert seen == list(range(1, 51))
    assert [e.seq for e in store.events(run_id, after=48)] == [49, 50, 51]


def test_candidates_measurements_artifacts(db: Database) -> None:
    run_id = RunStore(db).create_run("optimize f")
    with db.session() as s:
        cand = Candidate(
            run_id=run_id,
            origin="user:cand.py",
            source="def f(): ...",
            source_hash="ab" * 32,
            verdict="faster",
            speedup=1.8,
            ci_low=1.6,
            ci_high=2.0,
        )
        s.add(cand)
        s.flush()
        s.add(
            Measurement(
                candidate_id=cand.id, kind="time", value=1.5e-3, unit="s", meta={"samples": 20}
            )
        )
        s.add(
            Artifact(
                run_id=run_id,
                candidate_id=cand.id,
                kind="diff",
                name="f.diff",
                content=b"--- a\n+++ b\n",
            )
        )
    with db.session() as s:
        cand = s.scalars(select(Candidate)).one()
        assert cand.measurements[0].meta == {"samples": 20}
        assert s.scalars(select(Artifact)).one().content.startswith(b"---")


def test_bad_urls_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="in-memory SQLite"):
        Database("sqlite://")
    with pytest.raises(StorageError, match="cannot reach the database"):
        Database("postgresql://nobody@127.0.0.1:1/none")
    assert normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"


def test_default_database_lives_under_the_data_directory(tmp_path: Path) -> None:
    from perfsmith.config import load_settings

    url = load_settings().resolved_database_url()
    assert url == f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}"
    db = Database(url)
    assert (tmp_path / "home" / "perfsmith.db").exists()
    db.close()


def test_event_rows_keep_their_payload_types(db: Database) -> None:
    store = RunStore(db)
    run_id = store.create_run("r")
    rec = RunRecorder(db, run_id)
    rec.emit(TaskParsed(round=1, idx=2, tool="t", deps=[1], line="é", duplicate_of=None))
    db.flush()
    with db.session() as s:
        event = s.scalars(select(Event)).one()
    assert event.type == "task_parsed"
    assert event.payload == {
        "round": 1,
        "idx": 2,
        "tool": "t",
        "deps": [1],
        "line": "é",
        "duplicate_of": None,
    }

"""The quick look before the ORM: a run surely missing is said so; anything it cannot be
sure of is left to the database layer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from perfsmith.storage.db import Database
from perfsmith.storage.probe import run_missing
from perfsmith.storage.runs import RunStore


def test_only_a_run_surely_missing_is_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'perfsmith.db'}"
    assert run_missing(url, "nope")  # no database file yet: no run in it
    run_id = RunStore(Database(url)).create_run("a request")
    assert not run_missing(url, run_id)
    assert run_missing(url, "0" * 32)
    # what only the database layer can answer is not guessed at
    bare = tmp_path / "bare.db"
    sqlite3.connect(bare).close()  # a file with no runs table (a database being created)
    assert not run_missing(f"sqlite:///{bare}", "nope")
    assert not run_missing("postgresql://u@localhost/perfsmith", "nope")
    assert not run_missing("sqlite:///:memory:", "nope")

"""A quick look into a SQLite database with the standard library, before the ORM is
loaded: whether a run is surely missing. The CLI answers a run id that is not there at
once with it (loading SQLAlchemy and checking the schema takes most of a second)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; None for any other database."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def run_missing(url: str, run_id: str) -> bool:
    """True when the database surely holds no run ``run_id``: a SQLite file that does not
    exist, or whose runs table lacks it. False when the run is there, and whenever only
    the full database layer can tell (PostgreSQL, a file being created or migrated)."""
    path = sqlite_file(url)
    if path is None:
        return False
    if not path.exists():
        return True
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
    except sqlite3.Error:
        return False
    return row is None

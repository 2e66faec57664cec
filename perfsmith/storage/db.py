"""The database: engine and sessions for any SQLAlchemy URL, migrations on open, and one
writer thread so that async code never blocks on I/O and SQLite never sees two writers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from perfsmith.errors import StorageError

T = TypeVar("T")
_MIGRATIONS = Path(__file__).with_name("migrations")
# the newest migration (tests/storage checks it is alembic's head): a database already
# there opens without loading alembic
SCHEMA_HEAD = "0004"
# any 64-bit number unique to perfsmith: PostgreSQL's lock that serializes migrations
_PG_MIGRATION_LOCK = 0x70657266736D6974


def normalize_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg 3 (the driver perfsmith installs)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


BUSY_TIMEOUT_S = 60  # how long a transaction waits for SQLite's write lock


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # perfsmith opens its transactions itself (_sqlite_begin): not the driver.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # WAL lets readers (the CLI, the API) read while a run writes; NORMAL sync is durable
    # across process crashes (not power loss), which is what resume needs.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    """Transactions take the write lock when they begin (BEGIN IMMEDIATE), waiting for it
    up to the busy timeout. A deferred transaction that reads and then writes fails at
    once with "database is locked" when another connection wrote in between (the busy
    timeout does not apply to that upgrade); read-only sessions stay deferred."""
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.is_postgres = parsed.get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            database = parsed.database
            if database and database != ":memory:":
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            else:
                raise StorageError(
                    "in-memory SQLite cannot be shared between perfsmith's threads and "
                    "processes; give a file path (sqlite:///path/to/perfsmith.db)"
                )
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except Exception as exc:
            raise StorageError(f"cannot use database URL {parsed!r}: {exc}") from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perfsmith-db")
        # Called on the writer thread with each run event once its row is committed (the
        # API's server wakes the event streams of its runs with it).
        self.event_hooks: list[Callable[[dict[str, Any]], None]] = []
        if migrate:
            self.upgrade()

    @property
    def display_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def schema_version(self) -> str | None:
        """The database's migration (None: a new database, or one this cannot read)."""
        try:
            conn = self.engine.connect()
        except OperationalError as exc:
            raise self._unreachable(exc) from exc
        with conn:
            try:
                row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            except SQLAlchemyError:
                return None
        return str(row[0]) if row is not None else None

    def _unreachable(self, exc: OperationalError) -> StorageError:
        return StorageError(
            f"cannot reach the database at {self.display_url}: {exc.orig}; "
            "check PERFSMITH_DATABASE_URL"
        )

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent, and safe when several
        processes open a new database at once: they take turns)."""
        if self.schema_version() == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        try:
            with self._migration_lock(), self.engine.begin() as conn:
                if self.is_postgres:
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK}
                    )
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise self._unreachable(exc) from exc
        except Timeout as exc:
            raise StorageError(
                f"another process has been migrating {self.display_url} for a minute; "
                f"if none is running, delete {exc.lock_file}"
            ) from exc

    def _migration_lock(self) -> contextlib.AbstractContextManager[object]:
        """SQLite runs DDL outside transactions, so two processes migrating a new file would
        both create the tables; a lock file beside the database makes them take turns."""
        if not self.is_sqlite:
            return contextlib.nullcontext()
        database = make_url(self.url).database
        assert database is not None
        return FileLock(str(Path(database).expanduser()) + ".migrate.lock", timeout=60)

    def tables(self) -> list[str]:
        return sorted(inspect(self.engine).get_table_names())

    @contextlib.contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction. `readonly` ones do not wait for writers (SQLite)."""
        with self.sessions() as s, s.begin():
            if readonly and self.is_sqlite:
                s.connection(execution_options={"sqlite_begin": "DEFERRED"})
            yield s

    def submit(self, fn: Callable[[Session], T]) -> Future[T]:
        """Queue `fn(session)` on the writer thread (in order); returns a future."""

        def job() -> T:
            with self.session() as s:
                return fn(s)

        return self._writer.submit(job)

    async def write(self, fn: Callable[[Session], T]) -> T:
        """Run `fn(session)` on the writer thread and wait for its commit."""
        return await asyncio.wrap_future(self.submit(fn))

    def flush(self) -> None:
        """Wait until every queued write has committed."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.engine.dispose()

    def checkpoint_target(self) -> str:
        """Where LangGraph's checkpointer keeps graph state (its own driver and tables)."""
        parsed = make_url(self.url)
        if self.is_sqlite:
            assert parsed.database is not None
            return str(Path(parsed.database).expanduser()) + ".checkpoints"
        if self.is_postgres:
            return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        raise StorageError(
            f"no LangGraph checkpointer for {parsed.get_backend_name()}; use SQLite or PostgreSQL"
        )

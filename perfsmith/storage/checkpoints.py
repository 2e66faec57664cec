"""LangGraph checkpointers beside perfsmith's database: SQLite next to a SQLite database,
PostgreSQL in a PostgreSQL one. They use their own drivers and tables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from perfsmith.storage.db import BUSY_TIMEOUT_S, Database

# any 64-bit number unique to perfsmith: serializes checkpointer migrations across processes
_PG_SETUP_LOCK = 0x70657266636B7074
_ready: set[str] = set()  # checkpointer tables known to be set up, by database
_setting_up: dict[str, asyncio.Lock] = {}


async def _setup_postgres(saver: AsyncPostgresSaver, target: str) -> None:
    """LangGraph's setup migrates its tables by inserting version rows: two runs setting up
    at once (a server starting many runs) collide on them. Once per process and database,
    and one process at a time."""
    if target in _ready:
        return
    lock = _setting_up.setdefault(target, asyncio.Lock())
    async with lock:
        if target in _ready:
            return
        import psycopg

        async with await psycopg.AsyncConnection.connect(target, autocommit=True) as guard:
            await guard.execute("SELECT pg_advisory_lock(%s)", (_PG_SETUP_LOCK,))
            try:
                await saver.setup()
            finally:
                await guard.execute("SELECT pg_advisory_unlock(%s)", (_PG_SETUP_LOCK,))
        _ready.add(target)


@asynccontextmanager
async def open_checkpointer(db: Database) -> AsyncIterator[BaseCheckpointSaver[str]]:
    target = db.checkpoint_target()
    if db.is_postgres:
        async with AsyncPostgresSaver.from_conn_string(target) as pg:
            await _setup_postgres(pg, target)
            yield pg
        return
    # Many runs at once each hold a connection: wait for the write lock as long as
    # perfsmith's own database does, not the driver's 5 s.
    async with aiosqlite.connect(target, timeout=BUSY_TIMEOUT_S) as conn:
        lite = AsyncSqliteSaver(conn)
        await lite.setup()  # CREATE TABLE IF NOT EXISTS: safe to repeat and to race
        yield lite

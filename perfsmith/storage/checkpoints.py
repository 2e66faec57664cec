"""LangGraph checkpointers beside perfsmith's database: SQLite next to a SQLite database,
PostgreSQL in a PostgreSQL one. They use their own drivers and tables."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from perfsmith.storage.db import Database


@asynccontextmanager
async def open_checkpointer(db: Database) -> AsyncIterator[BaseCheckpointSaver[str]]:
    target = db.checkpoint_target()
    if db.is_postgres:
        async with AsyncPostgresSaver.from_conn_string(target) as pg:
            await pg.setup()  # idempotent: creates or migrates its tables
            yield pg
        return
    async with AsyncSqliteSaver.from_conn_string(target) as lite:
        await lite.setup()
        yield lite

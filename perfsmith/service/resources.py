"""The one place that builds what a run works with: its database, its sandbox, its LLM."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from perfsmith.config import Settings

if TYPE_CHECKING:
    from perfsmith.llm.base import ChatModel
    from perfsmith.sandbox.base import Sandbox
    from perfsmith.storage.db import Database


def open_database(database: Database | str | None, settings: Settings) -> tuple[Database, bool]:
    """The database to use and whether the caller opened it here (and closes it)."""
    from perfsmith.storage.db import Database

    if isinstance(database, Database):
        return database, False
    return Database(database or settings.resolved_database_url()), True


class Resources:
    """A run's sandbox and LLM. A sandbox or a model given here is the caller's (never
    closed here); one opened on demand (the `backend` named) is closed by `close`."""

    def __init__(
        self,
        settings: Settings,
        *,
        sandbox: Sandbox | None = None,
        backend: str = "auto",
        llm: ChatModel | str | None = None,
    ) -> None:
        self.settings = settings
        self._sandbox = sandbox
        self._owned: Sandbox | None = None
        self._backend = backend
        self._lock = asyncio.Lock()
        self._spec = llm if isinstance(llm, str) else None
        self._llm = None if isinstance(llm, str) else llm

    @property
    def llm_spec(self) -> str | None:
        return self._spec

    async def sandbox(self) -> Sandbox:
        if self._sandbox is not None:
            return self._sandbox
        async with self._lock:
            if self._owned is None:
                from perfsmith.sandbox.select import open_sandbox

                self._owned = await open_sandbox(self._backend)
            return self._owned

    def model(self, stored_spec: str | None) -> ChatModel | None:
        if self._llm is not None:
            return self._llm
        spec = self._spec or stored_spec
        if not spec or spec == "none":
            return None
        from perfsmith.llm.factory import model_from_spec

        self._llm = model_from_spec(spec, self.settings)
        return self._llm

    async def close(self) -> None:
        if self._owned is not None:
            box, self._owned = self._owned, None
            await box.close()

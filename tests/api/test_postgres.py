"""The server on PostgreSQL: concurrent runs streamed whole, tenants apart, a follow-up."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfsmith.api.client import ApiError, Client
from tests.conftest import PG_URL, fresh_pg_database
from tests.servers import PLAN_SCRIPT, PLAN_TOOLS, Server, start_server, stop_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not PG_URL:
        pytest.skip("PERFSMITH_TEST_PG_URL is unset: no PostgreSQL server to test against")
    folder: Path = tmp_path_factory.mktemp("pg-server")
    server = start_server(
        folder, PLAN_SCRIPT, "--tools", str(PLAN_TOOLS), db_url=fresh_pg_database()
    )
    yield server
    stop_server(server)


async def test_concurrent_runs_tenants_and_a_follow_up_on_postgres(pg_server: Server) -> None:
    async with (
        Client(pg_server.url, pg_server.tokens["alice"], timeout=120) as alice,
        Client(pg_server.url, pg_server.tokens["bob"]) as bob,
    ):
        runs = await asyncio.gather(
            *(alice.runs.create({"kind": "plan", "request": f"run {i}"}) for i in range(20))
        )

        async def events(run_id: str) -> list[int]:
            return [e.seq async for e in alice.runs.events(run_id)]

        streamed = await asyncio.gather(*(events(r.id) for r in runs))
        for run, seqs in zip(runs, streamed, strict=True):
            stored = [e.seq async for e in alice.runs.events(run.id, follow=False)]
            assert seqs == stored == list(range(1, len(stored) + 1))
            done = await alice.runs.get(run.id)
            assert done.status == "done", done.error
            assert done.answer == "the pauses add up to 240"
        with pytest.raises(ApiError) as info:
            await bob.runs.get(runs[0].id)
        assert info.value.status == 404
        assert (await bob.runs.list()).total == 0
        assert (await alice.runs.list(limit=5)).total == 20

        await alice.runs.message(runs[0].id, "once more")
        again = await alice.runs.wait(runs[0].id, within_s=60)
        assert again.answer == "the follow-up adds up to 13"
        assert [t.round for t in await alice.runs.tasks(runs[0].id)].count(2) == 2

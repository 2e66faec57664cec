"""`perfsmith.Client`: the REST API from Python (async, on httpx), with the server's own
pydantic models as results.

    async with Client("http://127.0.0.1:8080", token) as client:
        run = await client.runs.create("make examples/dupes/dupes.py::find_duplicates faster")
        async for event in client.runs.events(run.id):
            print(event.type)
        done = await client.runs.wait(run.id)
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from perfsmith.api.schemas import (
    ArtifactOut,
    BatchCreate,
    BatchOut,
    BatchResume,
    CandidateOut,
    ChatRunCreate,
    EventOut,
    Health,
    KernelRunCreate,
    MessageCreate,
    OptimizeRunCreate,
    PlanOut,
    PlanRunCreate,
    RunOut,
    RunPage,
    TaskOut,
)
from perfsmith.errors import PerfsmithError

Row = TypeVar("Row", bound=BaseModel)
AnyRunCreate = ChatRunCreate | OptimizeRunCreate | KernelRunCreate | PlanRunCreate


class ApiError(PerfsmithError):
    """The server answered with a problem (4xx/5xx); `errors` names each wrong field."""

    def __init__(
        self, status: int, title: str, detail: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail
        self.errors = errors or []


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise ApiError(
        response.status_code,
        str(body.get("title") or response.reason_phrase),
        str(body.get("detail") or response.text[:500]),
        body.get("errors"),
    )


def parse_sse(lines: list[str]) -> EventOut | None:
    """One server-sent event block (its lines) as an EventOut; comments give None."""
    data = [line[5:].lstrip() for line in lines if line.startswith("data:")]
    if not data:
        return None
    return EventOut.model_validate_json("\n".join(data))


class Runs:
    def __init__(self, client: Client) -> None:
        self._c = client

    async def create(self, request: str | AnyRunCreate | dict[str, Any]) -> RunOut:
        """Start a run: a chat message (str), a typed request, or its JSON as a dict."""
        if isinstance(request, str):
            body: dict[str, Any] = {"kind": "chat", "message": request}
        elif isinstance(request, BaseModel):
            body = request.model_dump(exclude_none=True)
        else:
            body = request
        return RunOut.model_validate(await self._c.request("POST", "/runs", json=body))

    async def list(
        self,
        *,
        limit: int = 20,
        offset: int = 0,
        status: str | None = None,
        kind: str | None = None,
    ) -> RunPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        if kind:
            params["kind"] = kind
        return RunPage.model_validate(await self._c.request("GET", "/runs", params=params))

    async def get(self, run_id: str) -> RunOut:
        return RunOut.model_validate(await self._c.request("GET", f"/runs/{run_id}"))

    async def cancel(self, run_id: str) -> RunOut:
        return RunOut.model_validate(await self._c.request("POST", f"/runs/{run_id}/cancel"))

    async def resume(self, run_id: str) -> RunOut:
        return RunOut.model_validate(await self._c.request("POST", f"/runs/{run_id}/resume"))

    async def message(self, run_id: str, text: str) -> RunOut:
        """A follow-up: the run plans again with this instruction."""
        body = MessageCreate(text=text).model_dump()
        return RunOut.model_validate(
            await self._c.request("POST", f"/runs/{run_id}/messages", json=body)
        )

    async def _rows(self, run_id: str, what: str, model: type[Row]) -> builtins.list[Row]:
        data = await self._c.request("GET", f"/runs/{run_id}/{what}")
        return [model.model_validate(row) for row in data]

    async def plans(self, run_id: str) -> builtins.list[PlanOut]:
        return await self._rows(run_id, "plans", PlanOut)

    async def tasks(self, run_id: str) -> builtins.list[TaskOut]:
        return await self._rows(run_id, "tasks", TaskOut)

    async def candidates(self, run_id: str) -> builtins.list[CandidateOut]:
        return await self._rows(run_id, "candidates", CandidateOut)

    async def artifacts(self, run_id: str) -> builtins.list[ArtifactOut]:
        return await self._rows(run_id, "artifacts", ArtifactOut)

    async def artifact(self, run_id: str, artifact_id: int) -> bytes:
        return (await self._c.raw("GET", f"/runs/{run_id}/artifacts/{artifact_id}")).content

    async def events(
        self, run_id: str, *, after: int = 0, follow: bool = True, reconnects: int = 5
    ) -> AsyncIterator[EventOut]:
        """The run's events in order, until its last one; a dropped connection is resumed
        where it broke (Last-Event-ID), so no event is lost or repeated."""
        last = after
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last:
                headers["Last-Event-ID"] = str(last)
            params = {"follow": "true" if follow else "false"}
            try:
                async with self._c.http.stream(
                    "GET",
                    f"/runs/{run_id}/events",
                    headers=headers,
                    params=params,
                    timeout=httpx.Timeout(self._c.timeout, read=None),
                ) as response:
                    if not response.is_success:
                        await response.aread()
                        _raise_for(response)
                    block: list[str] = []
                    async for line in response.aiter_lines():
                        if line:
                            block.append(line)
                            continue
                        event = parse_sse(block)
                        block = []
                        if event is not None and event.seq > last:
                            last = event.seq
                            failures = 0
                            yield event
                    return  # the server ended the stream: the run has ended
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > reconnects:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))

    async def wait(self, run_id: str, *, within_s: float | None = None) -> RunOut:
        """Follow the run until it ends (at most `within_s` seconds); its final state."""

        async def drain() -> RunOut:
            async for _ in self.events(run_id):
                pass
            return await self.get(run_id)

        return await asyncio.wait_for(drain(), within_s)


class Batches:
    """Overnight batches: submit a batch file, follow its jobs, read its report."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def submit(self, toml: str) -> BatchOut:
        """Submit a batch file's text (its paths relative to the server's workspace)."""
        body = BatchCreate(toml=toml).model_dump()
        return BatchOut.model_validate(await self._client.request("POST", "/batches", json=body))

    async def list(self, *, limit: int = 20) -> builtins.list[BatchOut]:
        data = await self._client.request("GET", "/batches", params={"limit": limit})
        return [BatchOut.model_validate(b) for b in data]

    async def get(self, batch_id: str) -> BatchOut:
        return BatchOut.model_validate(await self._client.request("GET", f"/batches/{batch_id}"))

    async def report(self, batch_id: str, *, format: str = "md") -> str:
        response = await self._client.raw(
            "GET", f"/batches/{batch_id}/report", params={"format": format}
        )
        return response.text

    async def cancel(self, batch_id: str) -> BatchOut:
        return BatchOut.model_validate(
            await self._client.request("POST", f"/batches/{batch_id}/cancel")
        )

    async def resume(self, batch_id: str, *, until: str | None = None) -> BatchOut:
        body = BatchResume(until=until).model_dump()
        return BatchOut.model_validate(
            await self._client.request("POST", f"/batches/{batch_id}/resume", json=body)
        )

    async def wait(self, batch_id: str, *, poll_s: float = 1.0) -> BatchOut:
        """The batch once it has ended (every job done, failed, cancelled or skipped)."""
        while True:
            batch = await self.get(batch_id)
            if batch.status == "ended":
                return batch
            await asyncio.sleep(poll_s)


class Client:
    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self.runs = Runs(self)
        self.batches = Batches(self)

    async def raw(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's response (a success: problems raise `ApiError`)."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ApiError(0, "Unreachable", f"cannot reach {self.http.base_url}: {exc}") from exc
        _raise_for(response)
        return response

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.raw(method, path, **kwargs)).json()

    async def health(self) -> Health:
        return Health.model_validate(await self.request("GET", "/health"))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

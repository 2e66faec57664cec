"""The REST API: runs and everything they store, their events as server-sent events, bearer
tokens per tenant, errors as problem details (RFC 9457)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from perfsmith.api.intake import RequestError, typed
from perfsmith.api.manager import ConflictError, RunManager
from perfsmith.api.schemas import (
    ArtifactOut,
    BatchCreate,
    BatchOut,
    BatchResume,
    CandidateOut,
    EventOut,
    Health,
    MessageCreate,
    PlanOut,
    Problem,
    RunCreate,
    RunOut,
    RunPage,
    TaskOut,
)
from perfsmith.api.tokens import Principal, TokenStore, hash_token
from perfsmith.errors import BatchFileError, BatchNotFoundError, RunNotFoundError, StorageError
from perfsmith.events import TERMINAL, RunStatus, read_event
from perfsmith.storage.models import Event, Run, utc

MAX_BODY_BYTES = 1_000_000
Row = TypeVar("Row", bound=BaseModel)
RUN_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="a run's id")]
BATCH_ID = Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="a batch's id")]
_PROBLEM_JSON = "application/problem+json"
MAX_SEQ = 2**62  # every integer the database is asked about fits its 64-bit integers
_UI_DIR = Path(__file__).resolve().parent.parent / "ui" / "static"


def _raw(response_class: type[Response], *media_types: str) -> dict[str, Any]:
    """The route options of an endpoint whose answer is not JSON: its response class and
    the media types its 200 carries (for the OpenAPI document)."""
    content: dict[str, Any] = {media: {} for media in media_types}
    return {"response_class": response_class, "responses": {200: {"content": content}}}


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text, "content": {_PROBLEM_JSON: {}}}
    for code, text in (
        (401, "missing or unknown bearer token"),
        (404, "no such run (or it belongs to another tenant)"),
        (409, "the run's state does not allow this"),
        (413, "request body too large"),
        (422, "invalid request; `errors` names each wrong field"),
    )
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers = headers


def problem(
    status: int,
    title: str,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = Problem(
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        **extra,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        media_type=_PROBLEM_JSON,
        headers=headers,
    )


class BodyLimit:
    """Refuses request bodies over `limit` bytes (413), declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = problem(
            413, "Payload Too Large", f"request bodies are limited to {self.limit} bytes"
        )
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        # read the body here (it is small by definition) so a streamed one is held to the
        # limit too; then hand it on, and later messages (disconnects) as they come
        body: list[Message] = []
        size = 0
        while True:
            message = await receive()
            body.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return body.pop(0) if body else await receive()

        await self.app(scope, replay, send)


def run_out(row: Run, manager: RunManager) -> RunOut:
    message = row.config.get("message") if isinstance(row.config, dict) else None
    return RunOut(
        id=row.id,
        kind=row.kind,
        status=row.status,
        request=row.request,
        message=message if isinstance(message, str) else None,
        answer=row.answer,
        error=row.error,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        active=manager.is_active(row.id),
    )


def event_out(row: Event) -> EventOut:
    return EventOut(
        seq=row.seq,
        type=row.type,
        payload=read_event(row.type, row.payload),
        time=utc(row.created_at),
    )


def sse(event: EventOut) -> str:
    data = json.dumps(event.model_dump(mode="json"), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


_BEARER = HTTPBearer(auto_error=False, description="an API token (`perfsmith tokens create`)")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def principal(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
) -> Principal:
    """Who sent the request, from its bearer token (checked at most every 5 s per token)."""
    if creds is None or not creds.credentials:
        raise ApiError(
            401,
            "Unauthorized",
            "send an API token: `Authorization: Bearer <token>` "
            "(`perfsmith tokens create NAME` makes one)",
            headers=_CHALLENGE,
        )
    state = request.app.state
    key = hash_token(creds.credentials)
    hit = state.principals.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < 5.0:
        return hit[1]  # type: ignore[no-any-return]
    found: Principal | None = await asyncio.to_thread(state.tokens.authenticate, creds.credentials)
    if found is None:
        state.principals.pop(key, None)
        raise ApiError(401, "Unauthorized", "unknown or revoked API token", headers=_CHALLENGE)
    state.principals[key] = (now, found)
    return found


Auth = Annotated[Principal, Depends(principal)]


def create_app(manager: RunManager, *, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    store = manager.store

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        try:
            yield
        finally:
            await manager.shutdown()

    app = FastAPI(
        title="perfsmith",
        version=version("perfsmith"),
        summary="Make Python and kernels faster, with proof: runs, their plans, candidates, "
        "verdicts and events.",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.state.tokens = TokenStore(manager.db)
    app.state.principals = {}  # token hash -> (checked at, principal)

    # -- errors as problem details ---------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, request, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body",
                "message": e.get("msg", "invalid"),
                "type": e.get("type", "value_error"),
            }
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem(422, "Invalid request", detail, request, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        return problem(
            exc.status_code, title, str(exc.detail), request, headers=dict(exc.headers or {})
        )

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, exc: RequestError) -> JSONResponse:
        errors = [{"field": exc.field, "message": str(exc), "type": "request_error"}]
        return problem(422, "Invalid request", str(exc), request, errors=errors)

    @app.exception_handler(RunNotFoundError)
    async def _missing(request: Request, exc: RunNotFoundError) -> JSONResponse:
        return problem(404, "Not Found", f"no run {exc.run_id}", request)

    @app.exception_handler(BatchNotFoundError)
    async def _no_batch(request: Request, exc: BatchNotFoundError) -> JSONResponse:
        return problem(404, "Not Found", f"no batch {exc.batch_id}", request)

    @app.exception_handler(BatchFileError)
    async def _bad_batch(request: Request, exc: BatchFileError) -> JSONResponse:
        errors = [{"field": "toml", "message": p, "type": "batch_file"} for p in exc.problems]
        return problem(422, "Invalid batch file", str(exc), request, errors=errors)

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return problem(409, "Conflict", str(exc), request)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        return problem(503, "Service Unavailable", str(exc), request)

    async def owned(run_id: str, who: Principal) -> Run:
        row = await asyncio.to_thread(store.get_run, run_id)
        if row.tenant != who.tenant:
            raise RunNotFoundError(run_id)  # another tenant's runs do not exist for you
        return row

    async def stored(
        run_id: str, who: Principal, query: Callable[[str], Iterable[Any]], model: type[Row]
    ) -> list[Row]:
        """One of the caller's runs' stored rows (plans, tasks, candidates) as ``model``."""
        await owned(run_id, who)
        return [model.model_validate(r) for r in await asyncio.to_thread(query, run_id)]

    # -- endpoints -------------------------------------------------------------------

    @app.get("/health", tags=["server"])
    async def health() -> Health:
        """Liveness; needs no token."""
        return Health(status="ok", version=version("perfsmith"))

    @app.get("/kernel-problems", tags=["server"])
    async def kernel_problems(who: Auth) -> list[str]:
        """The kernel suite's problems a kernel run (or a chat message) can name."""
        return manager.config.workspace.problems()

    @app.post("/runs", status_code=201, tags=["runs"])
    async def create_run(body: RunCreate, who: Auth, response: Response) -> RunOut:
        """Start a run from a chat message or a typed request; returns at once, the work
        goes on in the server (follow it on `/runs/{id}/events`)."""
        # Reading a megabyte of chat is CPU work: off the event loop.
        req = await asyncio.to_thread(
            typed, body, manager.config.workspace, has_tools=bool(manager.config.tools)
        )
        message = getattr(body, "message", None)
        row = await manager.create(req, tenant=who.tenant, message=message)
        response.headers["Location"] = f"/runs/{row.id}"
        return run_out(row, manager)

    @app.get("/runs", tags=["runs"])
    async def list_runs(
        who: Auth,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        status: RunStatus | None = None,
        kind: Literal["optimize", "kernel", "orchestrate", "demo"] | None = None,
    ) -> RunPage:
        """Your tenant's runs, newest first."""

        def load() -> tuple[list[Run], int]:
            rows = store.list_runs(
                limit=limit, offset=offset, status=status, kind=kind, tenant=who.tenant
            )
            return rows, store.count_runs(status=status, kind=kind, tenant=who.tenant)

        rows, total = await asyncio.to_thread(load)
        nxt = offset + len(rows)
        return RunPage(
            items=[run_out(r, manager) for r in rows],
            total=total,
            limit=limit,
            offset=offset,
            next_offset=nxt if nxt < total else None,
        )

    @app.get("/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: RUN_ID, who: Auth) -> RunOut:
        return run_out(await owned(run_id, who), manager)

    @app.post("/runs/{run_id}/cancel", status_code=202, tags=["runs"])
    async def cancel_run(run_id: RUN_ID, who: Auth) -> RunOut:
        """Stop a run; it is stored as cancelled (and can be resumed)."""
        await owned(run_id, who)
        await manager.cancel(run_id)
        return run_out(await asyncio.to_thread(store.get_run, run_id), manager)

    @app.post("/runs/{run_id}/resume", status_code=202, tags=["runs"])
    async def resume_run(run_id: RUN_ID, who: Auth) -> RunOut:
        """Finish an interrupted run; finished tasks and verdicts are reused."""
        await owned(run_id, who)
        await manager.resume(run_id)
        return run_out(await asyncio.to_thread(store.get_run, run_id), manager)

    @app.post("/runs/{run_id}/messages", status_code=202, tags=["runs"])
    async def post_message(run_id: RUN_ID, body: MessageCreate, who: Auth) -> RunOut:
        """A follow-up in the run's chat: an ended run plans again with this instruction
        (its earlier rounds and candidates stay; the best of all of them wins)."""
        await owned(run_id, who)
        await manager.follow_up(run_id, body.text)
        return run_out(await asyncio.to_thread(store.get_run, run_id), manager)

    @app.get("/runs/{run_id}/plans", tags=["runs"])
    async def plans(run_id: RUN_ID, who: Auth) -> list[PlanOut]:
        return await stored(run_id, who, store.plans, PlanOut)

    @app.get("/runs/{run_id}/tasks", tags=["runs"])
    async def tasks(run_id: RUN_ID, who: Auth) -> list[TaskOut]:
        """The plan's tasks (a DAG: `deps` are the indexes they wait for) with timings."""
        return await stored(run_id, who, store.tasks, TaskOut)

    @app.get("/runs/{run_id}/candidates", tags=["runs"])
    async def candidates(run_id: RUN_ID, who: Auth) -> list[CandidateOut]:
        """Every candidate with its verdict, speedup, 95% interval and measurements."""
        return await stored(run_id, who, store.candidates, CandidateOut)

    @app.get("/runs/{run_id}/artifacts", tags=["runs"])
    async def artifacts(run_id: RUN_ID, who: Auth) -> list[ArtifactOut]:
        """Diffs, reports and kernel sources; download each from its own URL."""
        await owned(run_id, who)
        rows = await asyncio.to_thread(store.artifacts, run_id)
        return [ArtifactOut.of(a, size) for a, size in rows]

    @app.get(
        "/runs/{run_id}/artifacts/{artifact_id}",
        tags=["runs"],
        **_raw(Response, "application/octet-stream"),
    )
    async def artifact(
        run_id: RUN_ID, artifact_id: Annotated[int, PathParam(ge=1, le=2**62)], who: Auth
    ) -> Response:
        await owned(run_id, who)
        row = await asyncio.to_thread(store.artifact, run_id, artifact_id)
        if row is None:
            raise ApiError(404, "Not Found", f"run {run_id} has no artifact {artifact_id}")
        safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in row.name)
        return Response(
            row.content,
            media_type=row.media_type,
            headers={"Content-Disposition": f'attachment; filename="{safe}"'},
        )

    @app.get("/runs/{run_id}/events", tags=["runs"], **_raw(StreamingResponse, "text/event-stream"))
    async def events(
        run_id: RUN_ID,
        who: Auth,
        after: Annotated[
            int, Query(ge=0, le=MAX_SEQ, description="send events after this seq")
        ] = 0,
        follow: Annotated[bool, Query(description="keep streaming until the run ends")] = True,
        last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    ) -> StreamingResponse:
        """The run's events in order as server-sent events (`id:` is the event's seq). A
        client that reconnects with `Last-Event-ID` gets exactly the events it missed;
        the stream ends after the run's last event."""
        await owned(run_id, who)
        start = after
        if last_event_id is not None:
            seq = last_event_id.strip()
            if not (seq.isascii() and seq.isdigit()):
                raise ApiError(
                    422,
                    "Invalid request",
                    "Last-Event-ID must be the seq of the last event received",
                    errors=[{"field": "header.last-event-id", "message": "not a number"}],
                )
            if int(seq) > MAX_SEQ:
                raise ApiError(
                    400,
                    "Bad request",
                    f"Last-Event-ID {seq} is past any event's seq (at most {MAX_SEQ})",
                    errors=[{"field": "header.last-event-id", "message": "out of range"}],
                )
            start = max(start, int(seq))
        return StreamingResponse(
            _stream(manager, run_id, start, follow),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    # -- batches ---------------------------------------------------------------------

    batches = manager.batches

    async def batch_of(batch_id: str, who: Principal) -> BatchOut:
        row = await asyncio.to_thread(batches.get, batch_id, tenant=who.tenant)
        return BatchOut.model_validate(row)

    @app.post("/batches", status_code=201, tags=["batches"])
    async def submit_batch(body: BatchCreate, who: Auth) -> BatchOut:
        """Submit a batch file (TOML): checked whole (422 lists every problem), stored,
        and worked by a `perfsmith serve --work-batches` or `perfsmith batch run`."""
        workspace = manager.config.workspace.root
        batch_id = await asyncio.to_thread(
            batches.submit_text,
            body.toml,
            workspace=workspace,
            server_llm=manager.config.llm,
            tenant=who.tenant,
        )
        manager.batches_submitted()
        return await batch_of(batch_id, who)

    @app.get("/batches", tags=["batches"])
    async def list_batches(
        who: Auth, limit: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> list[BatchOut]:
        """Your tenant's batches, newest first, with their jobs."""
        rows = await asyncio.to_thread(batches.batches, limit=limit, tenant=who.tenant)
        return [BatchOut.model_validate(r) for r in rows]

    @app.get("/batches/{batch_id}", tags=["batches"])
    async def get_batch(batch_id: BATCH_ID, who: Auth) -> BatchOut:
        """A batch and its jobs: status, attempts, best verified speedup, time, tokens."""
        return await batch_of(batch_id, who)

    @app.get(
        "/batches/{batch_id}/report",
        tags=["batches"],
        **_raw(Response, "text/markdown", "text/html"),
    )
    async def batch_report(
        batch_id: BATCH_ID,
        who: Auth,
        format: Annotated[Literal["md", "html"], Query(description="md or html")] = "md",
    ) -> Response:
        """The morning report (stored when the batch ended; as it stands before)."""
        text = await asyncio.to_thread(batches.report, batch_id, format, tenant=who.tenant)
        media = "text/markdown" if format == "md" else "text/html"
        return Response(text, media_type=f"{media}; charset=utf-8")

    @app.post("/batches/{batch_id}/cancel", status_code=202, tags=["batches"])
    async def cancel_batch(batch_id: BATCH_ID, who: Auth) -> BatchOut:
        """Stop a batch: queued jobs are cancelled, running ones at their next lease."""
        await batch_of(batch_id, who)
        try:
            await asyncio.to_thread(batches.cancel, batch_id)
        except StorageError as exc:
            raise ConflictError(str(exc)) from None
        return await batch_of(batch_id, who)

    @app.post("/batches/{batch_id}/resume", status_code=202, tags=["batches"])
    async def resume_batch(
        batch_id: BATCH_ID, who: Auth, body: BatchResume | None = None
    ) -> BatchOut:
        """Queue a stopped batch's unfinished jobs again (their runs resume)."""
        await batch_of(batch_id, who)
        until = body.until if body is not None else None
        try:
            await asyncio.to_thread(batches.requeue, batch_id, until=until)
        except ValueError as exc:
            raise RequestError(str(exc), field="until") from None
        manager.batches_submitted()
        return await batch_of(batch_id, who)

    if _UI_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=_UI_DIR, html=True), name="ui")
    _describe_the_event_stream(app)
    return app


def _describe_the_event_stream(app: FastAPI) -> None:
    """The OpenAPI document gives the event stream's items their schema: `EventOut`, its
    payload one model per event type (perfsmith.events), told apart by `type`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        _, defs = models_json_schema(
            [(EventOut, "serialization")], ref_template="#/components/schemas/{model}"
        )
        doc.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        ok = doc["paths"]["/runs/{run_id}/events"]["get"]["responses"]["200"]
        ok["content"]["text/event-stream"] = {"schema": {"$ref": "#/components/schemas/EventOut"}}
        ok["description"] = (
            "Server-sent events: `id:` the event's seq, `event:` its type, `data:` an "
            "EventOut as JSON."
        )
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


async def _stream(manager: RunManager, run_id: str, after: int, follow: bool) -> AsyncIterator[str]:
    """Events from the database (the one ordered record); wake-ups only cut the wait."""
    store = manager.store
    waiter = manager.subscribe(run_id)
    last = after
    quiet_since = time.monotonic()
    try:
        while True:
            waiter.clear()
            rows = await asyncio.to_thread(store.events, run_id, after=last, limit=500)
            for row in rows:
                last = row.seq
                yield sse(event_out(row))
            if rows:
                quiet_since = time.monotonic()
                continue
            if not follow:
                return
            if not manager.is_active(run_id):
                status = (await asyncio.to_thread(store.get_run, run_id)).status
                if status in TERMINAL:
                    # its last events were stored before its status changed
                    for row in await asyncio.to_thread(store.events, run_id, after=last):
                        last = row.seq
                        yield sse(event_out(row))
                    return
            try:
                await asyncio.wait_for(waiter.wait(), timeout=0.5)
            except TimeoutError:
                if time.monotonic() - quiet_since > 15:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
    finally:
        manager.unsubscribe(run_id, waiter)

"""An OpenAI-compatible HTTP server over the engine: ``GET /v1/models`` and
``POST /v1/chat/completions`` (whole responses and server-sent-event streams, usage
counts, JSON-schema and grammar constrained output)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from perfsmith.inference.constrain import ConstraintError, ConstraintSpec
from perfsmith.inference.engine import Generation, RequestError, Scheduler
from perfsmith.inference.sampling import SamplingParams

MAX_STOP = 4


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[TextPart]

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class JsonSchemaFormat(BaseModel):
    name: str = "output"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    # extensions (send with the SDK's extra_body)
    grammar: str | None = None
    guided_grammar: str | None = None
    speculate: bool = True

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return value

    def sampling(self, default_max: int) -> SamplingParams:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_completion_tokens or self.max_tokens or default_max,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
            stop=tuple(stops),
        )

    def constraint(self) -> ConstraintSpec | None:
        grammar = self.grammar or self.guided_grammar
        fmt = self.response_format
        if grammar and fmt is not None and fmt.type != "text":
            raise RequestError("give either a grammar or a response_format, not both")
        if grammar:
            return ConstraintSpec("grammar", grammar)
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return ConstraintSpec("json")
        if fmt.json_schema is None:
            raise RequestError("response_format json_schema needs a json_schema object")
        return ConstraintSpec("json_schema", json.dumps(fmt.json_schema.schema_))


def _error(status: int, message: str, kind: str, param: str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return JSONResponse(status_code=status, content=body)


def _usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": len(gen.tokens),
        "total_tokens": gen.prompt_tokens + len(gen.tokens),
    }


def _finish_reason(gen: Generation) -> str:
    return "length" if gen.finish_reason == "length" else "stop"


def create_app(scheduler: Scheduler, *, default_max_tokens: int = 512) -> FastAPI:
    engine = scheduler.engine
    app = FastAPI(title="perfsmith model server", version="0.1.0")
    created = int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(
            400,
            f"{loc or 'request'}: {first.get('msg', 'invalid')}",
            "invalid_request_error",
            loc or None,
        )

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": engine.name, "object": "model", "created": created, "owned_by": "perfsmith"}
            ],
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": engine.name}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(body: ChatRequest) -> JSONResponse | StreamingResponse | dict[str, Any]:
        if body.model not in (engine.name, "embedded", "default"):
            return _error(
                404,
                f"model {body.model!r} is not served here; this server serves {engine.name!r}",
                "invalid_request_error",
                "model",
            )
        try:
            constraint = body.constraint()
            params = body.sampling(default_max_tokens)
            prompt = engine.encode_chat(
                [
                    {"role": m.role if m.role != "developer" else "system", "content": m.text()}
                    for m in body.messages
                ]
            )
            engine.check_length(prompt)
            engine.constraint(constraint)  # compile now: a bad grammar is the client's error
        except (RequestError, ConstraintError) as exc:
            return _error(400, str(exc), "invalid_request_error")
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not body.stream:
            gen = await scheduler.complete(
                prompt, params, constraint=constraint, speculate=body.speculate
            )
            return {
                "id": ident,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": engine.name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": gen.text},
                        "finish_reason": _finish_reason(gen),
                    }
                ],
                "usage": _usage(gen),
            }
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            payload = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": engine.name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            async for kind, value in scheduler.stream(
                prompt, params, constraint=constraint, speculate=body.speculate
            ):
                if kind == "text":
                    yield chunk({"content": value}, None)
                elif kind == "done":
                    yield chunk({}, _finish_reason(value))
                    if include_usage:
                        usage = {
                            "id": ident,
                            "object": "chat.completion.chunk",
                            "created": int(time.time()),
                            "model": engine.name,
                            "choices": [],
                            "usage": _usage(value),
                        }
                        yield f"data: {json.dumps(usage)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app

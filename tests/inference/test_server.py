"""`perfsmith serve-model` as a user runs it, reached through the `openai` SDK."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.cli_runner import cli
from tests.conftest import TORCH_THREADS
from tests.inference.conftest import PROMPTS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfsmith.cli",
            "serve-model",
            "--port",
            str(port),
            "--context",
            "1024",
            "--threads",
            str(TORCH_THREADS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PERFSMITH_HOME": "/tmp/perfsmith-test-serve"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("server did not come up")
    yield base + "/v1"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0)


MODEL = "smollm2-135m"


def test_models_and_a_whole_completion_with_usage(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": PROMPTS[0]}],
        max_tokens=40,
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 40
    assert reply.usage.prompt_tokens > 50


def test_streaming_gives_the_same_text_as_the_whole_response(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": PROMPTS[3]}]
    whole = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=30,
        temperature=0,  # type: ignore[arg-type]
    )
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=30,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 30


def test_json_schema_and_grammar_requests(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}},
        "required": ["answer"],
    }
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=40,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}},
    )
    assert isinstance(json.loads(reply.choices[0].message.content or "")["answer"], int)
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "yes or no?"}],
        max_tokens=10,
        extra_body={"grammar": 'root ::= "yes" | "no"'},
    )
    assert reply.choices[0].message.content in ("yes", "no")


@pytest.mark.parametrize(
    ("change", "error", "fragment"),
    [
        ({"model": "gpt-17"}, openai.NotFoundError, "not served here"),
        ({"temperature": 3}, openai.BadRequestError, "temperature"),
        ({"top_p": 0}, openai.BadRequestError, "top_p"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
        ({"n": 2}, openai.BadRequestError, "n"),
        ({"messages": []}, openai.BadRequestError, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, openai.BadRequestError, "role"),
        ({"stop": ["a", "b", "c", "d", "e"]}, openai.BadRequestError, "stop"),
        (
            {"messages": [{"role": "user", "content": "word " * 2000}]},
            openai.BadRequestError,
            "context is 1024 tokens",
        ),
        ({"extra_body": {"grammar": "root ::= nothing"}}, openai.BadRequestError, "grammar"),
        ({"response_format": {"type": "json_schema"}}, openai.BadRequestError, "json_schema"),
    ],
)
def test_bad_requests_get_openai_style_errors(
    client: openai.OpenAI, change: dict[str, object], error: type[Exception], fragment: str
) -> None:
    request: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
    }
    request.update(change)
    with pytest.raises(error) as info:
        client.chat.completions.create(**request)  # type: ignore[call-overload]
    assert fragment in str(info.value)


def test_malformed_bodies_are_refused_and_the_server_keeps_serving(server: str) -> None:
    url = server + "/chat/completions"
    bad = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    assert "error" in bad.json()
    assert httpx.post(url, json=[1, 2]).status_code == 400
    ok = httpx.post(
        url,
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        timeout=60,
    )
    assert ok.status_code == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server: str) -> None:
    client = openai.AsyncOpenAI(base_url=server, api_key="unused", max_retries=0)
    asks = [f"Write one sentence about the number {i}." for i in range(8)]

    async def one(ask: str) -> str:
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": ask}], max_tokens=24, temperature=0
        )
        return reply.choices[0].message.content or ""

    async def both() -> tuple[list[str], list[str]]:
        together = await asyncio.gather(*(one(a) for a in asks))
        alone = [await one(a) for a in asks[:2]]
        return list(together), alone

    together, alone = asyncio.run(both())
    assert all(together)
    assert len(set(together)) > 4  # answers are not mixed up or duplicated
    assert together[:2] == alone  # batched greedy decoding gives the lone answer


@pytest.mark.slow(seconds=15)
def test_serve_model_refuses_bad_options() -> None:
    env = dict(os.environ)
    cases = [
        (["serve-model", "--compress", "int4"], "unknown compression 'int4'"),
        (["serve-model", "--speculate", "psychic"], "unknown speculation 'psychic'"),
        (["serve-model", "--model", "/no/such/model.gguf"], "unknown model"),
        (["serve-model", "--compress", "drop=x"], "whole number"),
        (["serve-model", "--kv-bits", "3"], "--kv-bits takes 2 or 4"),
        (["serve-model", "--compress", "act8,int8"], "does not combine"),
    ]
    for args, message in cases:
        done = cli(env, *args, "--port", str(free_port()), timeout=240)
        assert done.returncode == 1, done.stderr
        assert message in done.stderr, done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(env, "serve-model", "--port", str(port), timeout=120)
    assert done.returncode == 1 and "cannot listen" in done.stderr
    done = cli(env, "serve-model", "--port", "70000")
    assert done.returncode == 2

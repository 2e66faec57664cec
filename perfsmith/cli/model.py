"""`perfsmith serve-model`: perfsmith's own engine behind an OpenAI-compatible API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from perfsmith.cli.common import guard, out


def serve_model(
    model: Annotated[
        str,
        typer.Option(
            "--model", help="embedded (SmolLM2-135M), gemma3-270m, a .gguf file or an HF dir"
        ),
    ] = "embedded",
    compress: Annotated[
        str,
        typer.Option(
            "--compress", help="none (a GGUF's own weights), act8, fp32, int8, bf16, drop=N"
        ),
    ] = "none",
    speculate: Annotated[
        str, typer.Option("--speculate", help="none, ngram, adaptive or draft")
    ] = "adaptive",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8008,
    context: Annotated[int, typer.Option("--context", min=16, help="tokens per sequence")] = 2048,
    slots: Annotated[
        int, typer.Option("--slots", min=1, max=64, help="sequences decoded together")
    ] = 8,
    threads: Annotated[int | None, typer.Option("--threads", min=1)] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="default max_tokens of a request")
    ] = 512,
    chat_template: Annotated[
        Path | None, typer.Option("--chat-template", help="Jinja chat template file")
    ] = None,
    kv_bits: Annotated[
        int,
        typer.Option(
            "--kv-bits",
            help="quantize the KV cache to 2 or 4 bits (KIVI: 10.7x or 6.4x less memory "
            "per token; the last 64 positions stay fp32); 0: fp32",
        ),
    ] = 0,
) -> None:
    """Serve a local model over an OpenAI-compatible API (/v1/chat/completions)."""
    from perfsmith.inference.config import EngineConfig

    config = EngineConfig(
        model=model,
        compress=compress,
        speculate=speculate,
        context=context,
        slots=slots,
        threads=threads,
        chat_template=chat_template,
        kv_bits=kv_bits,
    )
    guard(config.check)  # a wrong option is refused before the engine loads
    from perfsmith.inference.serve import serve

    guard(
        lambda: serve(
            config,
            host=host,
            port=port,
            default_max_tokens=max_tokens,
            announce=lambda line: out.print(line, markup=False, highlight=False),
        )
    )

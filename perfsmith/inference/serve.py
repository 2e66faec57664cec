"""``perfsmith serve-model``: load an engine and serve it over HTTP with uvicorn."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from perfsmith.errors import ConfigError
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.engine import Scheduler


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def serve(
    config: EngineConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8008,
    default_max_tokens: int = 512,
    announce: Callable[[str], None] = print,
) -> None:
    import uvicorn

    from perfsmith.inference.server import create_app

    check_port(host, port)
    started = time.perf_counter()
    engine = build_engine(config)
    scheduler = Scheduler(engine)
    app = create_app(scheduler, default_max_tokens=default_max_tokens)
    announce(
        f"serving {engine.name} (compress={config.compress}, speculate={config.speculate}, "
        f"kv={f'{config.kv_bits} bits' if config.kv_bits else 'fp32'}, "
        f"context={engine.context}, slots={engine.slots}) at http://{host}:{port}/v1 "
        f"after {time.perf_counter() - started:.1f} s"
    )
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        scheduler.close()

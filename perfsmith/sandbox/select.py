"""Choose a sandbox backend: docker when the engine answers, else bubblewrap, else process."""

from __future__ import annotations

import logging
import shutil
from typing import Literal

from perfsmith.sandbox.base import Sandbox, SandboxError

log = logging.getLogger(__name__)
BackendName = Literal["auto", "process", "bubblewrap", "docker"]
BACKENDS = ("auto", "process", "bubblewrap", "docker")


async def open_sandbox(backend: str = "auto") -> Sandbox:
    from perfsmith.sandbox.process import ProcessSandbox

    if backend not in BACKENDS:
        raise SandboxError(
            f"unknown sandbox backend {backend!r}; choose one of {', '.join(BACKENDS)}"
        )
    if backend in ("auto", "docker"):
        from perfsmith.sandbox.docker_backend import DockerSandbox, docker_unavailable_reason

        reason = docker_unavailable_reason()
        if reason is None:
            import asyncio

            box = await asyncio.to_thread(DockerSandbox)
            log.info("sandbox backend: docker")
            return box
        if backend == "docker":
            raise SandboxError(f"docker backend unavailable: {reason}")
        log.info("sandbox: docker unavailable (%s)", reason)
    if backend in ("auto", "bubblewrap") and shutil.which("bwrap"):
        log.info("sandbox backend: bubblewrap")
        return ProcessSandbox(bubblewrap=True)
    if backend == "bubblewrap":
        raise SandboxError("bubblewrap is not installed (Debian: apt-get install bubblewrap)")
    log.info("sandbox backend: process")
    return ProcessSandbox()

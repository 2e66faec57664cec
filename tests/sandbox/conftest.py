"""Sandbox backends under test: the process backend always, bubblewrap when installed, and
docker when an engine answers (`.ci/run` installs and starts both)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from perfsmith.sandbox.base import Sandbox


def _docker_reason() -> str | None:
    from perfsmith.sandbox.docker_backend import docker_unavailable_reason

    return docker_unavailable_reason()


BACKENDS = ["process", "bubblewrap", "docker"]


def skip_unless_available(name: str) -> None:
    """Skip the test, with the reason, when backend `name` cannot run here."""
    if name == "bubblewrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    if name == "docker":
        reason = _docker_reason()
        if reason:
            pytest.skip(f"docker backend: {reason}")


@pytest.fixture(params=BACKENDS)
async def sandbox(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    from perfsmith.sandbox.select import open_sandbox

    name = request.param
    skip_unless_available(name)
    box = await open_sandbox(name)
    try:
        yield box
    finally:
        await box.close()

"""The verifier tests run their sandboxed code on the process backend: the fastest, and
always available."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.sandbox.process import ProcessSandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = ProcessSandbox()
    yield box
    await box.close()

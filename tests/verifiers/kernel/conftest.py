"""Kernel tests run their sandboxed steps on the process backend (the build cache is
shared by the whole session: see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.sandbox.process import ProcessSandbox

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "kernels"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = ProcessSandbox()
    yield box
    await box.close()

"""Kernel tests share one build cache per session (each C++ build takes tens of seconds)
and run their sandboxed steps on the process backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.sandbox.process import ProcessSandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "kernels"


@pytest.fixture(scope="session", autouse=True)
def build_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # PERFSMITH_TEST_CACHE_DIR shares builds with a benchmark run afterwards (GPU machines)
    given = os.environ.get("PERFSMITH_TEST_CACHE_DIR")
    folder = Path(given) if given else tmp_path_factory.mktemp("kernel-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERFSMITH_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = ProcessSandbox()
    yield box
    await box.close()

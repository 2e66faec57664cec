"""The machine's timing slot: no two timing measurements share a machine's cores at once.

A measurement (a Python timing round, a kernel's correctness-and-timing step) holds the
slot; builds, profiling, correctness checks and LLM calls run beside it. The slot is an
advisory lock on one file per machine, so it holds across threads, processes, a batch's
local pool and the Ray workers of one node alike. ``PERFSMITH_TIMING_SLOT`` names another
file (one per group of cores that must not time at once) or turns it ``off``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

ENV = "PERFSMITH_TIMING_SLOT"


def slot_path() -> Path | None:
    """The lock file, or None when the slot is off."""
    named = os.environ.get(ENV, "").strip()
    if named.lower() in ("off", "0", "none"):
        return None
    if named:
        return Path(named)
    return Path(tempfile.gettempdir()) / "perfsmith-timing.slot"


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's file: a read-only descriptor locks as well
        return os.open(path, os.O_RDONLY)


@contextlib.asynccontextmanager
async def timing_slot() -> AsyncIterator[float]:
    """Hold the machine's timing slot (waiting for it without blocking the event loop);
    yields how long the wait took, in seconds."""
    path = slot_path()
    if path is None:
        yield 0.0
        return
    fd = await asyncio.to_thread(_open, path)
    try:
        started = time.perf_counter()
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.02)
        yield time.perf_counter() - started
    finally:
        os.close(fd)  # closing the descriptor releases the lock

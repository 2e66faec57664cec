"""The lock that makes processes sharing the kernel cache build each thing once."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path


@contextlib.asynccontextmanager
async def exclusive(path: Path) -> AsyncIterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing) for the block,
    waiting without blocking the event loop; a cancelled wait holds nothing."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:  # closing the file releases the lock
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.25)
        yield
    finally:
        os.close(fd)

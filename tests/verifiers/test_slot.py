"""The machine's timing slot: measurements take turns, across coroutines and processes."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfsmith.verifiers.slot import timing_slot


def _hold(slot: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the slot for ``seconds`` (returned once it holds it)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, time\n"
            f"f = open({str(slot)!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            f"time.sleep({seconds})\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


async def test_measurements_take_turns_and_the_loop_stays_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERFSMITH_TIMING_SLOT", str(tmp_path / "slot"))
    inside: list[int] = []
    spans: list[tuple[float, float]] = []
    ticks = 0

    async def measure() -> None:
        async with timing_slot():
            inside.append(1)
            assert len(inside) == 1  # alone in the slot
            start = time.monotonic()
            await asyncio.sleep(0.05)
            spans.append((start, time.monotonic()))
            inside.pop()

    async def ticker() -> None:
        nonlocal ticks
        while len(spans) < 4:
            ticks += 1
            await asyncio.sleep(0.005)

    await asyncio.gather(*(measure() for _ in range(4)), ticker())
    spans.sort()
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert ticks > 10  # waiting for the slot never blocked the event loop


async def test_another_process_holding_the_slot_is_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slot = tmp_path / "slot"
    monkeypatch.setenv("PERFSMITH_TIMING_SLOT", str(slot))
    holder = _hold(slot, 0.5)
    async with timing_slot() as waited:
        pass
    assert waited >= 0.2  # it held the slot for 0.5 s and let go by exiting
    assert holder.wait(timeout=10) == 0
    monkeypatch.setenv("PERFSMITH_TIMING_SLOT", "off")
    again = _hold(slot, 5)
    try:
        started = time.monotonic()
        async with timing_slot() as waited:  # off: no wait whoever holds the file
            assert waited == 0.0
        assert time.monotonic() - started < 0.5
    finally:
        again.kill()
        again.wait()

"""callgrind counts: repeatable to the instruction run to run (fixed hash seed, fixed
working directory path, no address randomization), and the ratio follows the work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.python.correctness import GeneratedInputs
from perfsmith.verifiers.python.instructions import count_instructions, instructions_verdict
from perfsmith.verifiers.python.target import parse_target

pytestmark = pytest.mark.skipif(
    shutil.which("valgrind") is None, reason="valgrind is not installed"
)

WORK = (
    "def work(n: int) -> int:\n    acc = 0\n    for i in range({burn}):\n"
    "        acc ^= i\n    return n\n"
)


@pytest.mark.slow(seconds=25)
async def test_counts_repeat_exactly(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "ref.py").write_text(WORK.format(burn=40_000))
    (tmp_path / "cand.py").write_text(WORK.format(burn=20_000))
    (tmp_path / "gen.py").write_text("def gen(seed):\n    return [(seed,), (seed + 1,)]\n")
    args = (
        parse_target(f"{tmp_path}/ref.py::work"),
        parse_target(f"{tmp_path}/cand.py::work"),
        GeneratedInputs(parse_target(f"{tmp_path}/gen.py::gen")),
    )
    first = await count_instructions(sandbox, *args)
    second = await count_instructions(sandbox, *args)
    assert (first.reference, first.candidate) == (second.reference, second.candidate)
    assert first.speedup == pytest.approx(2.0, rel=0.05)
    assert instructions_verdict(first) == "faster"

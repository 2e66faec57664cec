"""The autotuner: tunables parsed from a kernel's source, every combination rewritten,
built and timed; the best verified variant kept."""

from __future__ import annotations

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.kernel.autotune import TuneError, autotune, tunables, variants
from perfsmith.verifiers.kernel.verify import KernelSettings, read_candidate, read_problem
from tests.verifiers.kernel.conftest import EXAMPLES

MATMUL = read_candidate(EXAMPLES / "cpp" / "matmul.py")


def test_tunables_and_their_variants() -> None:
    assert tunables(MATMUL) == {"BLOCK": ["32", "64", "128"], "KBLOCK": ["64", "128", "256"]}
    found = variants(MATMUL)
    assert len(found) == 9
    v = next(v for v in found if v.values == {"BLOCK": "32", "KBLOCK": "256"})
    assert "#define BLOCK 32\n" in v.source and "#define KBLOCK 256\n" in v.source
    assert v.label == "BLOCK=32 KBLOCK=256"
    # Python constants (Triton block sizes) are rewritten the same way
    triton = "# perfsmith: tune BLOCK_SIZE=[256,1024]\nBLOCK_SIZE = 512\n"
    assert [v.source.splitlines()[1] for v in variants(triton)] == [
        "BLOCK_SIZE = 256",
        "BLOCK_SIZE = 1024",
    ]
    assert variants("no tunables here") == []


def test_bad_declarations_are_clear_errors() -> None:
    with pytest.raises(TuneError, match="no `#define WIDTH`"):
        variants("// perfsmith: tune WIDTH=[1,2]\n#define HEIGHT 3\n")
    with pytest.raises(TuneError, match="lists no values"):
        variants("// perfsmith: tune WIDTH=[]\n#define WIDTH 3\n")
    with pytest.raises(TuneError, match="more than 64"):
        variants(
            "// perfsmith: tune A=[1,2,3,4,5,6,7,8,9] B=[1,2,3,4,5,6,7,8]\n"
            "#define A 1\n#define B 1\n"
        )


@pytest.mark.slow(seconds=45)
async def test_autotune_builds_times_and_keeps_the_best(sandbox: Sandbox) -> None:
    problem = read_problem(EXAMPLES / "matmul.py")
    two = MATMUL.replace("tune BLOCK=[32,64,128] KBLOCK=[64,128,256]", "tune BLOCK=[16,64]")
    seen: list[str] = []
    best, tried = await autotune(
        sandbox, problem, two, KernelSettings(rounds=5, trials=2), progress=seen.append
    )
    assert [v.label for v in tried] == ["BLOCK=16", "BLOCK=64"]
    assert all(v.result is not None and v.result.correct for v in tried)
    assert best is not None and best.result is not None
    assert best.result.speedup == max(v.result.speedup or 0 for v in tried if v.result)
    assert any(line.startswith("built BLOCK=16") for line in seen)
    assert any(line.startswith("BLOCK=64: ") for line in seen)

"""Static checks: every cheating candidate in the corpus is caught with a reason naming
its trick; the hand-written kernels in examples/kernels are not."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsmith.verifiers.kernel.cheats import check_kernel_source
from tests.verifiers.kernel.cheat_corpus import DYNAMIC, STATIC

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "kernels"


@pytest.mark.parametrize(("name", "source", "reason"), STATIC, ids=[c[0] for c in STATIC])
def test_each_static_cheat_is_named(name: str, source: str, reason: str) -> None:
    findings = check_kernel_source(source)
    assert any(reason in f.trick for f in findings), (name, [str(f) for f in findings])


def test_the_corpus_is_large_enough() -> None:
    assert len(STATIC) + len(DYNAMIC) >= 30


@pytest.mark.parametrize(
    "path",
    sorted(p for d in ("cpp", "cuda", "triton") for p in (EXAMPLES / d).glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_hand_written_kernels_pass_the_static_checks(path: Path) -> None:
    assert check_kernel_source(path.read_text()) == []

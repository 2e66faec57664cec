"""The cheat corpus: every wrong or cheating candidate is rejected with a reason naming
its trick, and every honest one is accepted (real sandbox for the dynamic ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.python.cheats import static_findings
from perfsmith.verifiers.python.correctness import check_correctness, generate_inputs
from perfsmith.verifiers.python.target import Target, parse_target
from tests.verifiers.python.cheat_corpus import CORRECT, DYNAMIC, STATIC

REFERENCE = (
    "def dedupe(items: list[int]) -> list[int]:\n    out = []\n    for x in items:\n"
    "        if x not in out:\n            out.append(x)\n    return out\n"
)
GENERATOR = (
    "import random\ndef gen(seed):\n    r = random.Random(seed)\n"
    "    return [([r.randrange(30) for _ in range(r.randrange(2, 40))],) for _ in range(12)]\n"
)


def test_the_corpus_is_large_enough() -> None:
    assert len(STATIC) + len(DYNAMIC) >= 40 and len(CORRECT) >= 5


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_cheats_are_named(name: str) -> None:
    source, words = STATIC[name]
    findings = static_findings(source)
    assert findings, f"{name} was not caught"
    assert any(words in f.trick for f in findings), [str(f) for f in findings]


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_honest_candidates_have_no_findings(name: str) -> None:
    assert static_findings(CORRECT[name]) == []


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cheats")
    (d / "ref.py").write_text(REFERENCE)
    (d / "gen.py").write_text(GENERATOR)
    return d


async def test_dynamic_cheats_and_honest_candidates(sandbox: Sandbox, workdir: Path) -> None:
    inputs = await generate_inputs(sandbox, parse_target(f"{workdir}/gen.py::gen"), [0, 1])
    reference = parse_target(f"{workdir}/ref.py::dedupe")
    for name, (source, words) in DYNAMIC.items():
        report = await check_correctness(
            sandbox, reference, Target(workdir / f"{name}.py", "dedupe", source), inputs
        )
        assert not report.correct, f"{name} passed"
        assert report.failure is not None and words in report.failure, (name, report.failure)
    for name, source in CORRECT.items():
        report = await check_correctness(
            sandbox, reference, Target(workdir / f"{name}.py", "dedupe", source), inputs
        )
        assert report.correct, (name, report.failure)

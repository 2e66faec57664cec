"""Differential testing through the real sandbox (process backend): correct candidates
pass; each way of being wrong is caught with the input and the first difference."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.python.correctness import InputError, check_correctness, generate_inputs
from perfsmith.verifiers.python.target import Target, TargetError, parse_target

REFERENCE = '''
def dedupe(items, key=None):
    """Remove duplicates, keeping the first of each, in order."""
    out = []
    for x in items:
        if x not in out:
            out.append(x)
    if key == "fail":
        raise ValueError("bad key")
    return out
'''

GENERATOR = """
import random

def inputs(seed):
    rng = random.Random(seed)
    cases = [([rng.randrange(20) for _ in range(rng.randrange(1, 60))],) for _ in range(5)]
    cases.append(([1, 1, 2], "fail"))
    return cases
"""

CANDIDATES = {
    "correct": "def dedupe(items, key=None):\n"
    "    if key == 'fail':\n        raise ValueError('also bad')\n"
    "    return list(dict.fromkeys(items))\n",
    "wrong_order": "def dedupe(items, key=None):\n"
    "    if key == 'fail':\n        raise ValueError('x')\n"
    "    return sorted(set(items))\n",
    "wrong_exception": "def dedupe(items, key=None):\n"
    "    if key == 'fail':\n        raise KeyError('x')\n"
    "    return list(dict.fromkeys(items))\n",
    "raises": "def dedupe(items, key=None):\n    raise RuntimeError('not implemented')\n",
    "mutates": "def dedupe(items, key=None):\n"
    "    if key == 'fail':\n        raise ValueError('x')\n"
    "    out = list(dict.fromkeys(items))\n    items.clear()\n    return out\n",
    "nondeterministic": "import itertools\n_calls = itertools.count()\n"
    "def dedupe(items, key=None):\n"
    "    if key == 'fail':\n        raise ValueError('x')\n"
    "    out = list(dict.fromkeys(items))\n"
    "    return out if next(_calls) % 2 == 0 else out[::-1]\n",
    "import_error": "import does_not_exist\ndef dedupe(items, key=None):\n    return items\n",
    "returns_tuple": "def dedupe(items, key=None):\n"
    "    if key == 'fail':\n        raise ValueError('x')\n"
    "    return tuple(dict.fromkeys(items))\n",
}

EXPECTED_FAILURE = {
    "wrong_order": "wrong result: result[",
    "wrong_exception": "raised KeyError instead of ValueError",
    "raises": "the candidate raised RuntimeError: not implemented",
    "mutates": "arguments changed differently from the reference: args[0]",
    "nondeterministic": "not deterministic",
    "import_error": "ModuleNotFoundError",
    "returns_tuple": "type tuple differs from the reference's list",
}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "ref.py").write_text(REFERENCE)
    (tmp_path / "gen.py").write_text(GENERATOR)
    for name, source in CANDIDATES.items():
        (tmp_path / f"{name}.py").write_text(source)
    return tmp_path


async def test_candidates_are_judged_by_their_behaviour(sandbox: Sandbox, files: Path) -> None:
    inputs = await generate_inputs(sandbox, parse_target(f"{files}/gen.py::inputs"), [0, 1])
    reference = parse_target(f"{files}/ref.py::dedupe")
    for name in CANDIDATES:
        report = await check_correctness(
            sandbox, reference, parse_target(f"{files}/{name}.py::dedupe"), inputs
        )
        assert report.n_inputs == 12
        if name == "correct":
            assert report.correct and report.failure is None, report.failure
        else:
            assert not report.correct, name
            assert report.failure is not None and EXPECTED_FAILURE[name] in report.failure, (
                name,
                report.failure,
            )
            if name not in ("import_error",):
                assert report.failure.startswith("input #"), report.failure


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope.py::f", "does not exist"),
        ("{dir}/ref.py", "is not FILE::FUNCTION"),
        ("{dir}/ref.py::missing", "defines no function 'missing' (it defines: dedupe)"),
        ("{dir}/syntax.py::f", "syntax error on line 1"),
    ],
)
def test_bad_targets_are_usage_errors(files: Path, spec: str, message: str) -> None:
    (files / "syntax.py").write_text("def f(:\n")
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_target(spec.replace("{dir}", str(files)))


async def test_bad_generators_are_usage_errors(sandbox: Sandbox, files: Path) -> None:
    (files / "bad_gen.py").write_text("def inputs(seed):\n    return 42\n")
    with pytest.raises(InputError, match="returned int, not a list of argument tuples"):
        await generate_inputs(sandbox, parse_target(f"{files}/bad_gen.py::inputs"), [0])
    (files / "bad_items.py").write_text("def inputs(seed):\n    return [[1, 2]]\n")
    with pytest.raises(InputError, match="not an argument tuple"):
        await generate_inputs(sandbox, parse_target(f"{files}/bad_items.py::inputs"), [0])
    (files / "empty.py").write_text("def inputs(seed):\n    return []\n")
    with pytest.raises(InputError, match="produced no inputs"):
        await generate_inputs(sandbox, parse_target(f"{files}/empty.py::inputs"), [0])
    (files / "crash.py").write_text("def inputs(seed):\n    raise OSError('disk gone')\n")
    with pytest.raises(InputError, match="disk gone"):
        await generate_inputs(sandbox, parse_target(f"{files}/crash.py::inputs"), [0])


async def test_a_failing_reference_is_reported_as_such(sandbox: Sandbox, files: Path) -> None:
    inputs = await generate_inputs(sandbox, parse_target(f"{files}/gen.py::inputs"), [0])
    broken = Target(
        files / "ref.py",
        "dedupe",
        "def dedupe(items, key=None):\n    1/0\nimport sys\nsys.exit(1)\n",
    )
    (files / "broken_import.py").write_text("raise SystemExit(4)\ndef dedupe(i, k=None): pass\n")
    with pytest.raises(InputError, match="the reference itself fails"):
        await check_correctness(
            sandbox, parse_target(f"{files}/broken_import.py::dedupe"), broken, inputs
        )

"""`perfsmith verify` end to end (real sandbox, real subprocess): its JSON contract, its
verdicts, and exit code 2 for every kind of usage error."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.cli_runner import cli

REF = (
    "def dedupe(items: list[int]) -> list[int]:\n    out = []\n    for x in items:\n"
    "        if x not in out:\n            out.append(x)\n    return out\n"
)
GEN = (
    "import random\ndef gen(seed):\n    r = random.Random(seed)\n"
    "    return [([r.randrange(300) for _ in range(400)],) for _ in range(3)]\n"
)


CALLER = """
import random
from ref import dedupe


def run():
    rng = random.Random(7)
    for n in (50, 3000, 4000):
        dedupe([rng.randrange(n // 2) for _ in range(n)])


def idle():
    pass


def broken():
    1 / 0
"""


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "ref.py").write_text(REF)
    (tmp_path / "fast.py").write_text(
        "def dedupe(items: list[int]) -> list[int]:\n    return list(dict.fromkeys(items))\n"
    )
    (tmp_path / "wrong.py").write_text(
        "def dedupe(items: list[int]) -> list[int]:\n    return sorted(set(items))\n"
    )
    (tmp_path / "gen.py").write_text(GEN)
    (tmp_path / "bad_gen.py").write_text("def gen(seed):\n    return 'garbage'\n")
    (tmp_path / "caller.py").write_text(CALLER)
    return tmp_path


def run(work: Path, *args: str) -> tuple[int, dict[str, object] | None, str]:
    done = cli(dict(os.environ), "verify", *args, "--backend", "process", timeout=300)
    data = json.loads(done.stdout) if done.returncode == 0 and "--json" in args else None
    return done.returncode, data, done.stderr


def test_faster_candidate_json_contract(work: Path) -> None:
    code, data, err = run(
        work,
        f"{work}/ref.py::dedupe",
        f"{work}/fast.py::dedupe",
        "--inputs",
        f"{work}/gen.py::gen",
        "--rounds",
        "6",
        "--json",
    )
    assert code == 0, err
    assert data is not None
    assert {"correct", "failure", "verdict", "speedup", "ci", "n_inputs", "mode"} <= data.keys()
    assert data["correct"] is True and data["failure"] is None and data["mode"] == "time"
    assert data["verdict"] == "faster" and data["n_inputs"] == 9
    low, high = data["ci"]  # type: ignore[misc]
    assert 1 < low <= data["speedup"] <= high  # type: ignore[operator]


def test_incorrect_candidate_names_the_input(work: Path) -> None:
    code, data, err = run(work, f"{work}/ref.py::dedupe", f"{work}/wrong.py::dedupe", "--json")
    assert code == 0, err  # whatever the verdict
    assert data is not None and data["correct"] is False and data["verdict"] == "incorrect"
    assert data["speedup"] is None and data["ci"] is None
    assert str(data["failure"]).startswith("input #")


@pytest.mark.slow(seconds=15)
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_mode(work: Path) -> None:
    code, data, err = run(
        work,
        f"{work}/ref.py::dedupe",
        f"{work}/fast.py::dedupe",
        "--inputs",
        f"{work}/gen.py::gen",
        "--mode",
        "instructions",
        "--json",
    )
    assert code == 0, err
    assert data is not None and data["mode"] == "instructions" and data["verdict"] == "faster"
    assert data["ci"] == [data["speedup"], data["speedup"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{w}/nope.py::dedupe", "{w}/fast.py::dedupe"], "does not exist"),
        (["{w}/ref.py::missing", "{w}/fast.py::dedupe"], "defines no function 'missing'"),
        (["{w}/ref.py", "{w}/fast.py::dedupe"], "is not FILE::FUNCTION"),
        (
            ["{w}/ref.py::dedupe", "{w}/fast.py::dedupe", "--inputs", "{w}/bad_gen.py::gen"],
            "not a list of argument tuples",
        ),
        (
            ["{w}/ref.py::dedupe", "{w}/fast.py::dedupe", "--inputs", "{w}/gen.py::nothing"],
            "defines no input generator 'nothing'",
        ),
        (["{w}/ref.py::dedupe", "{w}/fast.py::dedupe", "--mode", "vibes"], "time or instructions"),
        (["{w}/ref.py::dedupe", "{w}/fast.py::dedupe", "--threshold", "-1"], "Invalid value"),
        (["{w}/ref.py::dedupe"], "Missing argument"),
        (
            [
                "{w}/ref.py::dedupe",
                "{w}/fast.py::dedupe",
                "--inputs",
                "{w}/gen.py::gen",
                "--workload",
                "{w}/caller.py::run",
            ],
            "not both",
        ),
        (
            ["{w}/ref.py::dedupe", "{w}/fast.py::dedupe", "--workload", "{w}/caller.py::idle"],
            "never called dedupe",
        ),
        (
            ["{w}/ref.py::dedupe", "{w}/fast.py::dedupe", "--workload", "{w}/caller.py::broken"],
            "ZeroDivisionError",
        ),
    ],
)
def test_usage_errors_exit_2(work: Path, args: list[str], message: str) -> None:
    code, _, err = run(work, *[a.replace("{w}", str(work)) for a in args])
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_workload_calls_are_replayed_as_inputs(work: Path) -> None:
    code, data, err = run(
        work,
        f"{work}/ref.py::dedupe",
        f"{work}/fast.py::dedupe",
        "--workload",
        f"{work}/caller.py::run",
        "--rounds",
        "5",
        "--json",
    )
    assert code == 0, err
    assert data is not None and data["correct"] and data["n_inputs"] == 3
    assert data["details"]["inputs"] == f"3 calls recorded while {work}/caller.py::run ran"
    # on the real, large calls the list scan is far slower than dict.fromkeys
    assert data["verdict"] == "faster" and data["speedup"] > 10
    # the wrong candidate is caught on a recorded call
    code, data, err = run(
        work,
        f"{work}/ref.py::dedupe",
        f"{work}/wrong.py::dedupe",
        "--workload",
        f"{work}/caller.py::run",
        "--json",
    )
    assert code == 0 and data is not None and data["verdict"] == "incorrect", err


SIGNED = (
    "def total(values):\n    if any(v < 0 for v in values):\n"
    "        raise ValueError('negative value')\n"
    "    out = 0\n    for v in values:\n        out = out + sum([v])\n    return out\n"
)
SIGNED_FAST = (
    "def total(values):\n    if any(v < 0 for v in values):\n"
    "        raise ValueError('negative value')\n    return sum(values)\n"
)
SIGNED_GEN = (
    "import random\ndef gen(seed):\n    r = random.Random(seed)\n"
    "    return [([r.randrange(-5 if i % 3 == 0 else 0, 100) for _ in range(3000)],)"
    " for i in range(6)]\n"
)


@pytest.mark.slow(seconds=15)
def test_a_reference_that_raises_on_some_inputs_gets_a_verdict(work: Path) -> None:
    (work / "signed.py").write_text(SIGNED)
    (work / "signed_fast.py").write_text(SIGNED_FAST)
    (work / "signed_gen.py").write_text(SIGNED_GEN)
    code, data, err = run(
        work,
        f"{work}/signed.py::total",
        f"{work}/signed_fast.py::total",
        "--inputs",
        f"{work}/signed_gen.py::gen",
        "--json",
    )
    assert code == 0, err
    assert data is not None and data["correct"] is True and data["verdict"] == "faster", data
    assert "Traceback" not in err


BIG = (
    "def sum_product(numbers):\n    total, product = 0, 1\n    for n in numbers:\n"
    "        total += n\n        product *= n\n    return total, product\n"
)
BIG_FAST = "import math\ndef sum_product(numbers):\n    return sum(numbers), math.prod(numbers)\n"
BIG_WRONG = (
    "import math\ndef sum_product(numbers):\n"
    "    return sum(numbers), math.prod(numbers) + (len(numbers) > 1500)\n"
)
BIG_GEN = (
    "import random\ndef gen(seed):\n    r = random.Random(seed)\n"
    "    return [([r.randrange(10**6, 10**7) for _ in range(2000)],) for _ in range(3)]\n"
)


def test_results_past_the_int_string_limit_are_compared(work: Path) -> None:
    # Products of 2,000 seven-digit numbers have about 13,000 digits: past Python's
    # 4,300-digit limit on turning ints into decimal strings.
    (work / "big.py").write_text(BIG)
    (work / "big_fast.py").write_text(BIG_FAST)
    (work / "big_wrong.py").write_text(BIG_WRONG)
    (work / "big_gen.py").write_text(BIG_GEN)
    target, gen = f"{work}/big.py::sum_product", f"{work}/big_gen.py::gen"
    code, data, err = run(
        work, target, f"{work}/big_fast.py::sum_product", "--inputs", gen, "--json"
    )
    assert code == 0, err
    assert data is not None and data["correct"] is True, data
    code, data, err = run(
        work, target, f"{work}/big_wrong.py::sum_product", "--inputs", gen, "--json"
    )
    assert code == 0, err
    assert data is not None and data["correct"] is False and "input #0" in str(data["failure"])


def test_a_candidate_that_crashes_while_timed_is_one_line_and_exit_1(work: Path) -> None:
    # correct on the correctness inputs; ends its process when it is timed (the harness's
    # mode is its first argument), however few calls a slow machine's loops make
    (work / "fragile.py").write_text(
        "import os, sys\n"
        "def dedupe(items: list[int]) -> list[int]:\n"
        "    if sys.argv[1:2] == ['time']:\n"
        "        os.abort()\n"
        "    return list(dict.fromkeys(items))\n"
    )
    code, _, err = run(
        work,
        f"{work}/ref.py::dedupe",
        f"{work}/fragile.py::dedupe",
        "--inputs",
        f"{work}/gen.py::gen",
        "--json",
    )
    assert code == 1, err
    assert "Traceback" not in err and "timing" in err, err
    assert len(err.strip().splitlines()) <= 3, err

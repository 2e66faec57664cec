"""The workload profile through the real sandbox: cProfile's functions, pyinstrument's
call tree and line_profiler's hot lines, each from its own process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.sandbox.process import ProcessSandbox
from perfsmith.tools.profiling import ProfileError, describe, profile_workload
from perfsmith.verifiers.python.target import parse_target

TARGET = """
def helper(n):
    return sum(i * i for i in range(n))


def slow(items):
    out = []
    for x in items:
        if x not in out:
            out.append(x)
    return out, helper(2000)
"""

WORKLOAD = """
from target import slow


def run():
    for _ in range(3):
        slow(list(range(2500)))


def broken():
    raise RuntimeError("the workload's own bug")
"""


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    box = ProcessSandbox()
    yield box
    await box.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "target.py").write_text(TARGET)
    (tmp_path / "work.py").write_text(WORKLOAD)
    return tmp_path


async def test_functions_lines_and_call_tree(sandbox: Sandbox, project: Path) -> None:
    report = await profile_workload(
        sandbox, parse_target(f"{project}/target.py::slow"), parse_target(f"{project}/work.py::run")
    )
    assert report["target"]["share"] > 0.5
    assert report["functions"][0]["function"] == "slow"
    # line_profiler: the target and the module's other hot function, the scan on top
    by_name = {f["function"]: f for f in report["lines"]}
    assert set(by_name) == {"slow", "helper"}
    top = by_name["slow"]["lines"][0]
    assert top["code"] == "if x not in out:" and top["hits"] == 3 * 2500
    assert top["time_s"] > 0.5 * by_name["slow"]["total_s"]
    # pyinstrument: the call tree runs through the workload into the target
    tree = report["tree"]
    assert "run  work.py:" in tree and "slow  target.py:" in tree
    text = describe(report)
    assert "hottest lines (line_profiler):" in text and "if x not in out:" in text


async def test_a_failing_workload_says_why(sandbox: Sandbox, project: Path) -> None:
    with pytest.raises(ProfileError, match="the workload's own bug"):
        await profile_workload(
            sandbox,
            parse_target(f"{project}/target.py::slow"),
            parse_target(f"{project}/work.py::broken"),
        )

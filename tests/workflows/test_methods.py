"""Methods as targets (`FILE::Class.method`): parsed, spliced back into their class,
their instance recorded from a workload and replayed, verified, and rewritten by the
catalogue; a method whose instance cannot be recorded is a clear error."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from perfsmith.errors import PerfsmithError
from perfsmith.llm.scripted import ScriptedChatModel
from perfsmith.storage.db import Database
from perfsmith.verifiers.python.target import TargetError, function_source, parse_target
from perfsmith.workflows.candidates import splice

SHOP = textwrap.dedent(
    '''
    """A small shop: the slow spots sit in methods."""


    class Inventory:
        def __init__(self, names):
            self.names = list(names)

        def missing(self, wanted):
            return [w for w in wanted if w not in self.names]

        @classmethod
        def of(cls, text):
            return cls(text.split(","))

        @staticmethod
        def cheapest(prices):
            return sorted(prices)[0]
    '''
)
WORKLOAD = textwrap.dedent(
    """
    from shop import Inventory


    def run():
        inv = Inventory(f"item{i}" for i in range(3000))
        for _ in range(3):
            inv.missing([f"item{i}" for i in range(0, 6000, 3)])
    """
)
LOCKED = textwrap.dedent(
    """
    import threading

    from shop import Inventory


    def run():
        inv = Inventory(["a", "b"])
        inv.lock = threading.Lock()  # cannot be copied: the instance cannot be recorded
        inv.missing(["a", "c"])
    """
)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "workload.py").write_text(WORKLOAD)
    (tmp_path / "locked.py").write_text(LOCKED)
    return tmp_path


def test_method_targets_parse_and_bad_ones_say_why(shop: Path) -> None:
    for name, kind in (("missing", "method"), ("of", "classmethod"), ("cheapest", "staticmethod")):
        target = parse_target(f"{shop}/shop.py::Inventory.{name}")
        assert (target.owner, target.name, target.kind) == ("Inventory", name, kind)
    with pytest.raises(TargetError, match=r"no class 'Shelf'.*Inventory"):
        parse_target(f"{shop}/shop.py::Shelf.missing")
    with pytest.raises(TargetError, match=r"no method 'total'.*missing, of, cheapest"):
        parse_target(f"{shop}/shop.py::Inventory.total")
    with pytest.raises(TargetError, match=r"FILE::Class\.method"):
        parse_target(f"{shop}/shop.py::a.b.c")


def test_a_method_is_spliced_into_its_class_keeping_what_makes_it_static() -> None:
    assert function_source(SHOP, "Inventory.cheapest").startswith("@staticmethod\ndef cheapest")
    new = splice(SHOP, "Inventory.cheapest", "def cheapest(prices):\n    return min(prices)\n")
    namespace: dict[str, object] = {}
    exec(new, namespace)
    inventory = namespace["Inventory"]
    assert inventory.cheapest([3, 1, 2]) == 1  # type: ignore[attr-defined]
    assert "    @staticmethod\n    def cheapest(prices):\n        return min(prices)" in new


async def test_a_method_with_a_recorded_instance_is_rewritten_and_verified_faster(
    shop: Path, tmp_path: Path
) -> None:
    import perfsmith

    model = ScriptedChatModel(
        {
            "planner": ["1. read_source()\n2. rewrite()\n3. verify(candidate=$2)\njoin()\n"],
            "joiner": ["Thought: verified.\nAction: Finish(the set lookup wins)"],
        }
    )
    db = Database(f"sqlite:///{tmp_path / 'methods.db'}")
    try:
        result = await perfsmith.optimize(
            f"{shop}/shop.py::Inventory.missing",
            llm=model,
            workload=f"{shop}/workload.py::run",
            rounds=1,
            database=db,
            verify_rounds=6,
        )
    finally:
        db.close()
    assert result.best is not None, [(c.origin, c.verdict, c.failure) for c in result.candidates]
    assert result.best.origin == "catalogue:list-membership-to-set"
    assert result.best.speedup is not None and result.best.speedup > 1.2
    assert "self.names" in result.best.code and "class Inventory" in result.best.module
    assert result.diff.count("+") >= 2 and "def missing(self, wanted):" in result.diff


async def test_a_method_whose_instance_cannot_be_recorded_is_a_clear_error(
    shop: Path, tmp_path: Path
) -> None:
    import perfsmith

    db = Database(f"sqlite:///{tmp_path / 'locked.db'}")
    try:
        with pytest.raises(PerfsmithError, match=r"instance or arguments cannot be copied.*lock"):
            await perfsmith.optimize(
                f"{shop}/shop.py::Inventory.missing",
                llm=ScriptedChatModel({}),  # never asked: the error comes first
                workload=f"{shop}/locked.py::run",
                database=db,
            )
    finally:
        db.close()


def test_verify_takes_methods_on_both_sides(shop: Path, tmp_path: Path) -> None:
    import os

    from tests.cli_runner import cli

    fast = SHOP.replace(
        "return [w for w in wanted if w not in self.names]",
        "names = set(self.names)\n        return [w for w in wanted if w not in names]",
    )
    (shop / "fast.py").write_text(fast)
    done = cli(
        {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")},
        "verify",
        f"{shop}/shop.py::Inventory.missing",
        f"{shop}/fast.py::Inventory.missing",
        "--workload",
        f"{shop}/workload.py::run",
        "--backend",
        "process",
        "--rounds",
        "4",
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("faster: speedup"), done.stdout
    assert "correct on 3 inputs" in done.stdout

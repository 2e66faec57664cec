"""eff@k over a suite of stored runs: the scoring of each candidate, the per-problem
unbiased estimate averaged over problems, and `perfsmith runs eff-at-k` on a real
database (with its bad input)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from perfsmith.storage.db import Database
from perfsmith.storage.models import Candidate
from perfsmith.storage.runs import RunStore
from perfsmith.verifiers.python.suite import candidate_efficiency, suite_eff_at_k
from tests.cli_runner import cli

A = [("faster", 2.0), ("incorrect", None), ("same", 1.0), ("unmeasured", None)]
B = [("slower", 0.5), ("faster", 4.0)]


def test_candidate_scores() -> None:
    assert candidate_efficiency("faster", 2.0) == pytest.approx(1.5)
    assert candidate_efficiency("same", 1.0) == pytest.approx(1.0)
    assert candidate_efficiency("slower", 0.5) == 0.0
    assert candidate_efficiency("incorrect", None) == 0.0
    assert candidate_efficiency("uncompiled", None) == 0.0
    assert candidate_efficiency("unmeasured", None) is None


def test_suite_eff_at_k_by_hand() -> None:
    problems = [[1.5, 0.0, 1.0], [0.0, 1.75]]
    one, two, three, four = suite_eff_at_k(problems, [1, 2, 3, 4])
    assert one.eff == pytest.approx(((2.5 / 3) + 0.875) / 2) and one.problems == 2
    # problem A: the max of a random pair is 1.5 in 2 of 3 pairs, 1.0 in the third
    assert two.eff == pytest.approx(((1.0 + 2 * 1.5) / 3 + 1.75) / 2)
    assert three.eff == pytest.approx(1.5) and three.problems == 1
    assert four.eff is None and four.problems == 0
    with pytest.raises(ValueError, match="at least 1"):
        suite_eff_at_k(problems, [0])


def test_runs_eff_at_k_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'suite.db'}"
    db = Database(url)
    store = RunStore(db)
    for cands in (A, B):
        run_id = store.create_run("optimize something", kind="optimize")
        with db.session() as s:
            for i, (verdict, speedup) in enumerate(cands):
                s.add(
                    Candidate(
                        run_id=run_id,
                        origin=f"c{i}",
                        source="x",
                        source_hash=f"{run_id}{i}",
                        verdict=verdict,
                        speedup=speedup,
                    )
                )
    store.create_run("a kernel", kind="kernel")  # another kind: not in the suite
    db.close()
    env = {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")}
    done = cli(env, "runs", "eff-at-k", "--db", url, "-k", "1", "-k", "2", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["problems"] == 2
    by_k = {row["k"]: row for row in data["eff_at_k"]}
    assert by_k[1]["eff"] == pytest.approx(((2.5 / 3) + 0.875) / 2)
    assert by_k[2]["eff"] == pytest.approx(((1.0 + 2 * 1.5) / 3 + 1.75) / 2)
    for args, message in (
        (["--kind", "chat"], "choose optimize or kernel"),
        (["-k", "0"], "Invalid value"),
        (["--last", "x"], "Invalid value"),
    ):
        bad = cli(env, "runs", "eff-at-k", "--db", url, *args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)

"""`perfsmith kernel optimize` end to end on the CPU: a scripted planner proposes a
correct C++ kernel and one that does not compile; the real sandbox builds, verifies and
times them; verdicts, the trimmed compiler error and the best kernel are stored."""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import select

from perfsmith.storage.db import Database
from perfsmith.storage.models import Candidate, Measurement
from tests.cli_runner import cli

KERNELS = Path(__file__).resolve().parents[2] / "examples" / "kernels"
GOOD = (KERNELS / "cpp" / "softmax.py").read_text()
BROKEN = GOOD.replace("const float inv = 1.f / s;", "const float inv = 1.f / undeclared_sum;")
PLAN = """\
Thought: read the problem, propose two kernels at once, verify both.
1. read_problem()
2. propose(strategy="fuse", feedback=$1)
3. propose(strategy="vectorize")
4. verify(candidate=$2)
5. verify(candidate=$3)
join()
"""


def test_kernel_optimize_verifies_stores_and_writes_the_best(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "planner": [PLAN],
                "propose": [f"```python\n{GOOD}```", f"```python\n{BROKEN}```"],
                "joiner": ["Thought: verified.\nAction: Finish(done)"],
            }
        )
    )
    env = {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")}
    done = cli(
        env,
        "kernel",
        "optimize",
        str(KERNELS / "softmax.py"),
        "--llm",
        f"scripted:{script}",
        "--sandbox",
        "process",
        "--verify-rounds",
        "5",
        "--report-dir",
        str(tmp_path / "report"),
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    by_verdict = {c["verdict"]: c for c in result["candidates"]}
    assert len(result["candidates"]) == 2
    broken = by_verdict["uncompiled"]
    assert not broken["compiled"] and "undeclared_sum" in broken["failure"]
    good = next(c for c in result["candidates"] if c["compiled"])
    assert good["correct"] and good["verdict"] in ("faster", "same", "slower")
    assert good["ci"][0] <= good["speedup"] <= good["ci"][1]
    if good["verdict"] == "faster":  # the best kernel is written out
        assert Path(result["best_file"]).read_text() == GOOD
    else:
        assert result["best"] is None and result["best_file"] is None
    report = Path(result["report"]).read_text()
    assert "uncompiled" in report and "undeclared_sum" in report
    db = Database(f"sqlite:///{tmp_path / 'home' / 'perfsmith.db'}")
    with db.session() as s:
        rows = s.scalars(select(Candidate).where(Candidate.run_id == result["run_id"])).all()
        assert sorted(r.verdict or "" for r in rows) == sorted(
            c["verdict"] for c in result["candidates"]
        )
        assert {r.language for r in rows} == {"cpp"}
        timed = [r for r in rows if r.speedup is not None]
        measured = s.scalars(
            select(Measurement).where(Measurement.candidate_id.in_([r.id for r in timed]))
        ).all()
        # the best (a faster kernel) is also timed against torch.compile, once
        kinds = sorted(m.kind for m in measured)
        expected = ["kernel-cpu", "kernel-cpu-vs-compile"] if good["verdict"] == "faster" else []
        assert kinds == (expected or ["kernel-cpu"]), kinds
    db.close()


def test_a_resumed_run_reads_back_flags_and_the_torch_compile_baseline() -> None:
    """The verdict's flags come from the verdict's own measurement, the torch.compile
    baseline from its own (whatever order they were stored in)."""
    from perfsmith.workflows.kernels import _stored_result

    row = Candidate(
        origin="compiler:inductor",
        language="cpp",
        source="x",
        source_hash="h",
        verdict="faster",
        speedup=1.8,
        ci_low=1.6,
        ci_high=2.0,
    )
    row.measurements = [
        Measurement(kind="kernel-cpu", subject="ratio", value=1.8, unit="x", meta={"flags": []}),
        Measurement(
            kind="kernel-cpu-vs-compile",
            subject="ratio",
            value=1.2,
            unit="x",
            meta={"speedup": 1.2, "ci": [1.1, 1.3], "verdict": "faster", "compile_s": 14.0},
        ),
    ]
    result = _stored_result(row, "cpu")
    assert result.speedup == 1.8 and result.ci == (1.6, 2.0) and result.flags == []
    assert result.versus_compile is not None
    assert result.versus_compile.speedup == 1.2 and result.versus_compile.compile_s == 14.0
    row.measurements = [row.measurements[1], row.measurements[0]]
    row.measurements[1].meta = {"flags": ["review: too fast"]}
    assert _stored_result(row, "cpu").flags == ["review: too fast"]

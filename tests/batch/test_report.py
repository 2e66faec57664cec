"""The morning report's kernel figures: each kernel job's best against torch.compile too,
and each suite's fast_1 against it beside fast_1 and fast_0."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from perfsmith.batch.report import html_report, markdown_report, suite_scores
from perfsmith.storage.models import Batch, BatchJob


def _batch() -> Batch:
    def job(position: int, name: str, summary: dict[str, object]) -> BatchJob:
        return BatchJob(
            position=position,
            name=f"suite/{name}",
            kind="kernel",
            group="suite",
            status="done",
            attempts=1,
            tokens=0,
            elapsed_s=60.0,
            summary={"correct": 1, **summary},
        )

    versus = {"speedup": 1.33, "ci": [1.22, 1.47], "compile_s": 15.3}
    jobs = [
        job(0, "row_sumsq", {"speedup": 6.4, "ci": [4.66, 8.3], "versus_compile": versus}),
        job(
            1,
            "row_abs_diff",
            {
                "speedup": 2.43,
                "ci": [2.32, 3.01],
                "versus_compile": {"speedup": 0.91, "ci": [0.85, 0.99]},
            },
        ),
        job(2, "softmax", {"speedup": None}),
        job(3, "gelu", {"speedup": None}),
    ]
    return Batch(
        id="b" * 32,
        name="night",
        status="ended",
        source="",
        budgets={},
        created_at=datetime(2026, 12, 4, tzinfo=UTC),
        jobs=jobs,
    )


def test_kernel_jobs_are_reported_against_torch_compile_too() -> None:
    batch = _batch()
    [score] = suite_scores(batch.jobs)
    assert (score.fast_1, score.fast_1_compile) == (0.5, 0.25)
    markdown = markdown_report(batch)
    assert "6.40x [4.66, 8.30]; 1.33x [1.22, 1.47] vs torch.compile" in markdown
    assert "0.91x [0.85, 0.99] vs torch.compile" in markdown
    assert "| suite | 4 | 0.50 | 1.00 | 0.25 |" in markdown
    assert "<th>fast_1 vs torch.compile</th>" in html_report(batch)


def test_a_suite_never_timed_against_torch_compile_says_so() -> None:
    batch = _batch()
    for job in batch.jobs:
        job.summary = {k: v for k, v in job.summary.items() if k != "versus_compile"}
    [score] = suite_scores(batch.jobs)
    assert score.fast_1_compile is None
    assert "| suite | 4 | 0.50 | 1.00 | - |" in markdown_report(batch)


def test_a_kernel_runs_summary_carries_its_bests_torch_compile_baseline(tmp_path: Path) -> None:
    from perfsmith.batch.results import run_summary
    from perfsmith.storage.db import Database
    from perfsmith.storage.models import Candidate, Measurement
    from perfsmith.storage.runs import RunStore

    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        store = RunStore(db)
        run_id = store.create_run("a kernel", kind="kernel")
        with db.session() as s:
            row = Candidate(
                run_id=run_id,
                origin="compiler:inductor",
                language="cpp",
                source="x",
                source_hash="h",
                verdict="faster",
                speedup=6.4,
                ci_low=4.66,
                ci_high=8.3,
            )
            s.add(row)
            s.flush()
            meta = {"speedup": 1.33, "ci": [1.22, 1.47], "verdict": "faster", "compile_s": 15.3}
            s.add_all(
                [
                    Measurement(
                        candidate_id=row.id,
                        kind="kernel-cpu",
                        subject="ratio",
                        value=6.4,
                        unit="x",
                        meta={"flags": []},
                    ),
                    Measurement(
                        candidate_id=row.id,
                        kind="kernel-cpu-vs-compile",
                        subject="ratio",
                        value=1.33,
                        unit="x",
                        meta=meta,
                    ),
                ]
            )
        summary = run_summary(store, run_id)
    finally:
        db.close()
    assert summary["speedup"] == 6.4 and summary["best_origin"] == "compiler:inductor"
    assert summary["versus_compile"] == {"speedup": 1.33, "ci": [1.22, 1.47], "compile_s": 15.3}

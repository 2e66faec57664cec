"""The terminal's live task table follows runs one after another (a repository run's
functions are optimize runs of their own): each run's table starts afresh."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from perfsmith.console import LiveProgress


def event(kind: str, **payload: Any) -> dict[str, Any]:
    return {"type": kind, "run_id": "r", "payload": payload}


def test_a_new_run_starts_a_fresh_table() -> None:
    progress = LiveProgress(Console(file=io.StringIO(), width=120))
    for idx, tool in ((1, "profile"), (2, "rewrite"), (3, "verify")):
        progress(event("task_parsed", round=1, idx=idx, tool=tool, deps=[]))
    progress(event("run_started"))
    progress(event("task_parsed", round=1, idx=1, tool="read_source", deps=[]))
    assert [(r.idx, r.tool) for r in progress.rows.values()] == [(1, "read_source")]

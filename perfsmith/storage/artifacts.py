"""Files a run wrote (its reports) as stored artifacts, so the API can serve them."""

from __future__ import annotations

from pathlib import Path

from perfsmith.storage.models import Artifact


def report_artifacts(run_id: str, folder: Path) -> list[Artifact]:
    """report.md and report.html of ``folder`` as stored artifacts (the API serves them)."""
    found = []
    for name, kind, media in (
        ("report.md", "report-md", "text/markdown"),
        ("report.html", "report-html", "text/html"),
    ):
        path = folder / name
        if path.is_file():
            found.append(
                Artifact(
                    run_id=run_id, kind=kind, name=name, media_type=media, content=path.read_bytes()
                )
            )
    return found

"""Plain-text reports."""

from __future__ import annotations


def render_summary(rows: list[tuple[str, float]]) -> str:
    text = "summary\n"
    for name, total in rows:
        text = text + name + ": " + format(total, ".2f") + "\n"
    return text

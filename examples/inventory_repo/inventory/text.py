"""Tag helpers."""

from __future__ import annotations


def normalize_tags(tags: list[str]) -> list[str]:
    return [tag.strip().lower() for tag in tags if tag.strip()]


def tag_counts(tags: list[str]) -> dict[str, int]:
    """How often each tag occurs, in the order of first occurrence."""
    return {tag: tags.count(tag) for tag in tags}

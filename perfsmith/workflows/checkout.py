"""What a repository run needs of its path, checked without loading the workflow (the
CLI says what is wrong before anything heavy is imported; the run checks the same)."""

from __future__ import annotations

from pathlib import Path


def not_a_repository(repo: Path) -> str | None:
    """Why ``repo`` cannot hold a repository run's worktree, or None."""
    if not repo.is_dir():
        return f"{repo} is not a directory"
    if not (repo / ".git").exists():
        return f"{repo} is not a git repository (no .git)"
    return None

"""Where perfsmith keeps things on this machine (no other perfsmith import: the engine,
the kernels and the configuration all read it)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """Where perfsmith keeps its database and artifacts unless told otherwise."""
    override = os.environ.get("PERFSMITH_HOME")
    return Path(override) if override else Path(platformdirs.user_data_dir("perfsmith"))


def cache_dir() -> Path:
    """Where perfsmith keeps what it can rebuild: converted models, built kernels."""
    override = os.environ.get("PERFSMITH_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("perfsmith"))

"""Moving files into and out of a sandbox's working directory on the host side, safely:
names must stay inside, and links are never followed on the way out."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from perfsmith.sandbox.base import check_relative


def place_files(root: str, files: Mapping[str, bytes], owner: int | None) -> None:
    """Write `files` under `root`; with `owner`, the tree belongs to that uid."""
    for name, data in files.items():
        target = Path(root, check_relative(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if owner is not None:
        for dirpath, dirs, names in os.walk(root):
            for n in [
                dirpath,
                *(os.path.join(dirpath, d) for d in dirs),
                *(os.path.join(dirpath, f) for f in names),
            ]:
                os.lchown(n, owner, owner)


def collect_files(root: str, names: list[str], max_bytes: int) -> dict[str, bytes]:
    """Regular files only, never through a link out of `root`, each at most `max_bytes`."""
    out: dict[str, bytes] = {}
    real_root = os.path.realpath(root)
    for name in names:
        path = os.path.join(real_root, check_relative(name))
        if os.path.realpath(path) != path:
            continue  # a link somewhere on the way: refuse
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_size <= max_bytes:
                with os.fdopen(fd, "rb", closefd=False) as f:
                    out[name] = f.read()
        finally:
            os.close(fd)
    return out

"""Which process owns a run: "host:pid:start" (the start time in clock ticks after boot,
so a reused pid is not taken for the owner). A run whose owner on this machine is gone
(killed with -9, the machine restarted) can be told apart from one still in progress."""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: fields after its closing parenthesis
    return stat[stat.rindex(b")") + 2 :].split()[19].decode()


@functools.cache
def this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or 0}"


def is_gone(owner: str) -> bool:
    """True when `owner` ran on this machine and that process no longer runs; False when
    it still runs, or ran elsewhere (another machine cannot be asked)."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    host, pid, ticks = parts
    if host != socket.gethostname():
        return False
    now = _start_ticks(int(pid))
    return now is None or (ticks != "0" and now != ticks)

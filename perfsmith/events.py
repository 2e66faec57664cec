"""The vocabulary every writer and reader of a run shares: its statuses and its events.

At the bottom of the house (it imports nothing of perfsmith): the engine and the
workflows write events in these shapes, the service writes the statuses, the console, the
API's event stream, its OpenAPI document and the web UI read them.
"""

from __future__ import annotations

from typing import Literal, get_args

RunStatus = Literal["pending", "running", "done", "failed", "cancelled", "interrupted"]
STATUSES: tuple[str, ...] = get_args(RunStatus)
# `interrupted`: its process died (a server killed with -9); `runs resume` finishes it.
TERMINAL = frozenset({"done", "failed", "cancelled", "interrupted"})
ACTIVE = frozenset({"pending", "running"})

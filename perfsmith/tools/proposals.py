"""What the candidate tools share: the shapes they see candidates and verdicts in, and
feedback turned into prompt text."""

from __future__ import annotations

import json
from typing import Any, Protocol


class HasId(Protocol):
    """A stored candidate: the tools hand its id to the plan."""

    @property
    def id(self) -> int: ...


class Verdict(Protocol):
    """A candidate's verdict, as a plan's later steps (and the joiner) read it."""

    def as_dict(self) -> dict[str, Any]: ...


def feedback_text(feedback: Any, limit: int = 3000) -> str:
    """A proposal's feedback as text: a `$N` result (earlier verdicts, a profile) as JSON."""
    if isinstance(feedback, str):
        return feedback
    return json.dumps(feedback, default=str)[:limit]

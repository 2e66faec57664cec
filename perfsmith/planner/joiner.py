"""Read the joiner's answer: `Finish(answer)` or `Replan(reason)`, with an optional Thought.

Unlike LLMCompiler, the answer is everything between the action's `(` and its *last* `)`,
so answers that contain parentheses survive; a quoted answer is unquoted."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

_ACTION = re.compile(r"(?:Action\s*:\s*)?\b(Finish|Replan)\s*\(", re.IGNORECASE)
_THOUGHT = re.compile(r"Thought\s*:\s*(.*?)(?=\n\s*Action\s*:|\Z)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class JoinDecision:
    action: Literal["finish", "replan"]
    text: str  # the answer, or the reason to replan
    thought: str | None
    well_formed: bool = True


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
        if isinstance(value, str):
            return value
    return text


def parse_join(text: str) -> JoinDecision:
    thought_m = _THOUGHT.search(text)
    thought = thought_m.group(1).strip() if thought_m else None
    matches = list(_ACTION.finditer(text))
    if not matches:
        # Not in the expected form: treat the whole reply as the answer rather than loop.
        return JoinDecision("finish", text.strip(), thought, well_formed=False)
    m = matches[-1]
    rest = text[m.end() :]
    close = rest.rfind(")")
    body = rest[:close] if close >= 0 else rest
    action: Literal["finish", "replan"] = "finish" if m.group(1).lower() == "finish" else "replan"
    return JoinDecision(action, _unquote(body), thought, well_formed=close >= 0)

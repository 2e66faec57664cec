"""The plan model: tasks parsed from LLMCompiler-style plan lines, and how references in
their arguments are represented and filled in."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Ref:
    """`$N` standing alone: replaced by task N's value as is (a dict stays a dict)."""

    idx: int

    def __str__(self) -> str:
        return f"${self.idx}"


@dataclass(frozen=True, slots=True)
class Template:
    """A string with `$N` inside other text: each reference becomes the value's text."""

    parts: tuple[str | Ref, ...]

    def __str__(self) -> str:
        return "".join(str(p) for p in self.parts)


@dataclass(slots=True)
class TaskSpec:
    """One parsed plan line: `idx. tool(args)`."""

    idx: int
    tool: str
    args: dict[str, Any]
    deps: tuple[int, ...]
    line: str
    thought: str | None = None


@dataclass(slots=True)
class PlanLineError:
    """A plan line that cannot run; it becomes an observation for the joiner."""

    message: str
    line: str
    idx: int | None = None
    lineno: int = 0


@dataclass(slots=True)
class Join:
    """`join()`: the plan is complete."""

    thought: str | None = None


PlanItem = TaskSpec | PlanLineError | Join


def as_text(value: Any) -> str:
    """How a result reads inside a string argument or an observation."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def substitute(value: Any, results: dict[int, Any]) -> Any:
    """Replace references in an argument value with the results they name."""
    if isinstance(value, Ref):
        return results[value.idx]
    if isinstance(value, Template):
        return "".join(as_text(results[p.idx]) if isinstance(p, Ref) else p for p in value.parts)
    if isinstance(value, list):
        return [substitute(v, results) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, results) for v in value)
    if isinstance(value, dict):
        return {substitute(k, results): substitute(v, results) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return {substitute(v, results) for v in value}
    return value


def has_refs(value: Any) -> bool:
    if isinstance(value, (Ref, Template)):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(has_refs(v) for v in value)
    if isinstance(value, dict):
        return any(has_refs(k) or has_refs(v) for k, v in value.items())
    return False


def render_args(args: dict[str, Any]) -> str:
    """Arguments written back in plan syntax (for prompts, traces and fingerprints)."""

    def fmt(v: Any) -> str:
        if isinstance(v, Ref):
            return str(v)
        if isinstance(v, Template):
            return repr(str(v))
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        if isinstance(v, tuple):
            return "(" + ", ".join(fmt(x) for x in v) + ("," if len(v) == 1 else "") + ")"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{fmt(k)}: {fmt(x)}" for k, x in v.items()) + "}"
        return repr(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in args.items())

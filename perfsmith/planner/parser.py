"""Parse LLMCompiler-style plan text into tasks, one line at a time.

Each numbered line is parsed with Python's `ast` (in "eval" mode, literals only), after a
lexical pass that turns `$N` / `${N}` outside string literals into placeholder names. Inside
strings, references are found in the literal's value. Nothing in a plan is ever executed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

from perfsmith.errors import ToolError
from perfsmith.planner.plan import Join, PlanItem, PlanLineError, Ref, TaskSpec, Template, has_refs
from perfsmith.tools.registry import ToolRegistry

_NUMBERED = re.compile(r"^\s*(?:[-*]\s*)?(\d+)\s*[.:)]\s*(.*)$", re.DOTALL)
_THOUGHT = re.compile(r"^\s*(?:[-*]\s*)?Thought\s*:\s*(.*)$", re.IGNORECASE)
_JOIN = re.compile(r"^\s*join\s*\(\s*\)\s*;?\s*(#.*)?$")
_REF_IN_STRING = re.compile(r"\$\{(\d+)\}|\$(\d+)")
_REF_NAME = re.compile(r"^__ref_(\d+)__$")
_MAX_CALL_CHARS = 256_000


class _Incomplete(Exception):
    """The call text ends inside a string or an open bracket: more lines may finish it."""


def lex_refs(text: str) -> str:
    """Replace `$N` / `${N}` outside string literals with `__ref_N__`.

    Raises _Incomplete when the text ends inside a string literal or with open brackets.
    """
    out: list[str] = []
    i, n = 0, len(text)
    depth = 0
    while i < n:
        c = text[i]
        if c in "\"'":
            triple = text[i : i + 3] in ('"""', "'''")
            quote = text[i : i + 3] if triple else c
            j = i + len(quote)
            while True:
                if j >= n:
                    raise _Incomplete
                if text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j):
                    j += len(quote)
                    break
                if not triple and text[j] == "\n":
                    # An unterminated one-line string is a syntax error, not more to come.
                    j = n
                    out.append(text[i:])
                    return "".join(out)
                j += 1
            out.append(text[i:j])
            i = j
            continue
        if c == "#":
            end = text.find("\n", i)
            if end < 0:
                break
            i = end
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "$":
            m = re.match(r"\$\{(\d+)\}|\$(\d+)", text[i:])
            if m:
                out.append(f"__ref_{m.group(1) or m.group(2)}__")
                i += m.end()
                continue
        out.append(c)
        i += 1
    if depth > 0:
        raise _Incomplete
    return "".join(out)


def _string_value(s: str) -> str | Ref | Template:
    if "$" not in s:
        return s
    parts: list[str | Ref] = []
    last = 0
    for m in _REF_IN_STRING.finditer(s):
        if m.start() > last:
            parts.append(s[last : m.start()])
        parts.append(Ref(int(m.group(1) or m.group(2))))
        last = m.end()
    if not parts:
        return s
    if last < len(s):
        parts.append(s[last:])
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return parts[0]
    return Template(tuple(parts))


def _literal(node: ast.expr) -> Any:
    """A safe literal evaluator that understands reference placeholders."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return _string_value(node.value)
        if node.value is Ellipsis:
            raise ValueError("'...' is not a value")
        return node.value
    if isinstance(node, ast.Name):
        m = _REF_NAME.match(node.id)
        if m:
            return Ref(int(m.group(1)))
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        raise ValueError(f"bare name {node.id!r}: quote strings, and write references as $N")
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_literal(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("'**' unpacking is not allowed in plans")
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand)
        if isinstance(operand, (int, float, complex)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.JoinedStr):
        raise ValueError("f-strings are not allowed in plans; use $N inside a plain string")
    raise ValueError(f"only literal values and $N references are allowed, not {ast.unparse(node)!r}")


def _collect_refs(value: Any, into: set[int]) -> None:
    if isinstance(value, Ref):
        into.add(value.idx)
    elif isinstance(value, Template):
        into.update(p.idx for p in value.parts if isinstance(p, Ref))
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _collect_refs(v, into)
    elif isinstance(value, dict):
        for k, v in value.items():
            _collect_refs(k, into)
            _collect_refs(v, into)


class PlanParser:
    """Stateful line parser: checks ids, references and tool arguments across a plan."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self.seen: set[int] = set()
        self.last_idx = 0
        self.joined = False
        self._thought: str | None = None
        self.lineno = 0

    def parse_call(self, idx: int, call: str, line: str) -> PlanItem:
        thought, self._thought = self._thought, None

        def error(message: str) -> PlanLineError:
            return PlanLineError(message=message, line=line, idx=idx, lineno=self.lineno)

        if idx in self.seen:
            return PlanLineError(f"duplicate task id {idx}", line, None, self.lineno)
        if idx <= self.last_idx:
            return PlanLineError(
                f"task id {idx} is not greater than the previous id {self.last_idx}; "
                "ids must strictly increase",
                line,
                None,
                self.lineno,
            )
        self.seen.add(idx)
        self.last_idx = idx
        if _JOIN.match(call):
            self.joined = True
            return Join(thought)
        try:
            source = lex_refs(call) if "$" in call else call
            tree = ast.parse(source.strip(), mode="eval")
        except _Incomplete:
            return error("the call is not closed (an open bracket or string)")
        except SyntaxError as exc:
            return error(f"not a valid call: {exc.msg}")
        node = tree.body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            return error("expected `tool_name(arguments)`")
        name = node.func.id
        tool = self.registry.get(name)
        if tool is None:
            return error(f"unknown tool {name!r}; available: {', '.join(self.registry.names())}")
        try:
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords
            ):
                raise ValueError("'*' and '**' unpacking are not allowed in plans")
            args = [_literal(a) for a in node.args]
            kwargs = {k.arg: _literal(k.value) for k in node.keywords if k.arg is not None}
            bound = tool.bind(args, kwargs)
        except (ValueError, ToolError) as exc:
            return error(str(exc))
        except RecursionError:
            return error("arguments are nested too deeply")
        refs: set[int] = set()
        _collect_refs(bound, refs)
        for r in sorted(refs):
            if r >= idx:
                return error(
                    f"${r} refers to a later or the same task; a task may only use earlier "
                    "results (no cycles)"
                )
            if r not in self.seen:
                return error(f"${r} refers to a task that no earlier line defines")
        try:
            for key, value in bound.items():
                if not has_refs(value):
                    tool.check_field(key, value)
        except ToolError as exc:
            return error(str(exc))
        return TaskSpec(
            idx=idx, tool=name, args=bound, deps=tuple(sorted(refs)), line=line, thought=thought
        )

    def parse_line(self, line: str) -> PlanItem | None:
        """One complete line (or a multi-line call) -> an item, or None for prose."""
        self.lineno += 1
        if self.joined:
            return None
        stripped = line.strip()
        if not stripped or stripped.startswith("```"):
            return None
        m = _THOUGHT.match(stripped)
        if m:
            self._thought = m.group(1).strip() or None
            return None
        if _JOIN.match(stripped):
            self.joined = True
            return Join(self._thought)
        m = _NUMBERED.match(line)
        if not m:
            return None
        return self.parse_call(int(m.group(1)), m.group(2), stripped)

    def finish(self) -> Iterator[PlanLineError]:
        if not self.joined:
            yield PlanLineError(
                "the plan ended without join(); it must end with a join() line",
                "",
                None,
                self.lineno,
            )


def needs_more(line: str) -> bool:
    """True when a numbered line's call is still open (a multi-line argument)."""
    m = _NUMBERED.match(line)
    if not m or len(line) > _MAX_CALL_CHARS:
        return False
    try:
        lex_refs(m.group(2))
    except _Incomplete:
        return True
    return False


def parse_plan(text: str, registry: ToolRegistry) -> list[PlanItem]:
    """Parse a whole plan at once (same rules as the streaming parser)."""
    from perfsmith.planner.stream import StreamingPlanParser

    parser = StreamingPlanParser(registry)
    items = parser.feed(text)
    items.extend(parser.close())
    return items

"""Parse LLMCompiler-style plan text into tasks, one line at a time.

Each numbered line is parsed with Python's `ast` (in "eval" mode, literals only), after a
lexical pass that turns `$N` / `${N}` outside string literals into placeholder names. Inside
strings, references are found in the literal's value. Nothing in a plan is ever executed.
"""

from __future__ import annotations

import ast
import re
import warnings
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


class _IncompleteError(Exception):
    """The call text ends inside a string or an open bracket: more lines may finish it."""


_LEX = re.compile(r"\"\"\"|'''|[\"'#]|\$\{(\d+)\}|\$(\d+)")
_STRING_END = {
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"(?:[^'\\\n]|\\.)*'"),
    '"""': re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.DOTALL),
    "'''": re.compile(r"(?:[^'\\]|\\.|'(?!''))*'''", re.DOTALL),
}


def _depth(segment: str) -> int:
    return (
        segment.count("(")
        + segment.count("[")
        + segment.count("{")
        - segment.count(")")
        - segment.count("]")
        - segment.count("}")
    )


def lex_refs(text: str) -> str:
    """Replace `$N` / `${N}` outside string literals with `__ref_N__`.

    Jumps from one quote, comment or reference to the next (a regex search), so the cost is
    per token, not per character. Raises _IncompleteError when the text ends inside a
    triple-quoted string or with brackets still open: later lines may complete it.
    """
    out: list[str] = []
    depth = 0
    pos, n = 0, len(text)
    while True:
        m = _LEX.search(text, pos)
        segment = text[pos : m.start() if m else n]
        depth += _depth(segment)
        out.append(segment)
        if m is None:
            break
        ref = m.group(1) or m.group(2)
        if ref:
            out.append(f"__ref_{ref}__")
            pos = m.end()
            continue
        token = m.group(0)
        if token == "#":
            newline = text.find("\n", m.end())
            if newline < 0:
                break
            pos = newline
            continue
        closing = _STRING_END[token].match(text, m.end())
        if closing is None:
            if len(token) == 3:
                raise _IncompleteError
            # An unterminated one-line string is a syntax error for ast, not more to come.
            out.append(text[m.start() :])
            return "".join(out)
        out.append(text[m.start() : closing.end()])
        pos = closing.end()
    if depth > 0:
        raise _IncompleteError
    return "".join(out)


class _NeedMore:
    """parse_line's answer for a numbered call that later lines may complete."""


NEED_MORE = _NeedMore()


def _string_value(s: str, refs: set[int]) -> str | Ref | Template:
    if "$" not in s:
        return s
    parts: list[str | Ref] = []
    last = 0
    for m in _REF_IN_STRING.finditer(s):
        if m.start() > last:
            parts.append(s[last : m.start()])
        ref = Ref(int(m.group(1) or m.group(2)))
        refs.add(ref.idx)
        parts.append(ref)
        last = m.end()
    if not parts:
        return s
    if last < len(s):
        parts.append(s[last:])
    if len(parts) == 1 and isinstance(parts[0], Ref):
        return parts[0]
    return Template(tuple(parts))


def _literal(node: ast.expr, refs: set[int]) -> Any:
    """A safe literal evaluator that understands reference placeholders; every reference
    it meets is added to `refs`."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return _string_value(node.value, refs)
        if node.value is Ellipsis:
            raise ValueError("'...' is not a value")
        return node.value
    if isinstance(node, ast.Name):
        m = _REF_NAME.match(node.id)
        if m:
            refs.add(int(m.group(1)))
            return Ref(int(m.group(1)))
        if node.id in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[node.id]
        raise ValueError(f"bare name {node.id!r}: quote strings, and write references as $N")
    if isinstance(node, ast.List):
        return [_literal(e, refs) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e, refs) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_literal(e, refs) for e in node.elts}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise ValueError("'**' unpacking is not allowed in plans")
        return {
            _literal(k, refs): _literal(v, refs)  # type: ignore[arg-type]
            for k, v in zip(node.keys, node.values, strict=True)
        }
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand, refs)
        if isinstance(operand, (int, float, complex)) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.JoinedStr):
        raise ValueError("f-strings are not allowed in plans; use $N inside a plain string")
    raise ValueError(
        f"only literal values and $N references are allowed, not {ast.unparse(node)!r}"
    )


def _parse(text: str) -> ast.Expression:
    # A plan is the model's text, not perfsmith's code: Python's warnings about it (an
    # invalid escape like "\[" in a string) would only be noise on the user's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(text, mode="eval")


def _to_ast(call: str, final: bool) -> ast.Expression | _NeedMore | str:
    """The call's syntax tree; NEED_MORE if it is open and more text may come; or an error."""
    try:
        if "$" in call:
            return _parse(lex_refs(call).strip())
        try:
            return _parse(call.strip())
        except SyntaxError:
            lex_refs(call)  # raises _IncompleteError if the call is only unfinished
            raise
    except _IncompleteError:
        if final or len(call) > _MAX_CALL_CHARS:
            return "the call is not closed (an open bracket or string)"
        return NEED_MORE
    except SyntaxError as exc:
        return f"not a valid call: {exc.msg}"


class PlanParser:
    """Stateful line parser: checks ids, references and tool arguments across a plan."""

    def __init__(self, registry: ToolRegistry) -> None:
        self.registry = registry
        self.seen: set[int] = set()
        self.last_idx = 0
        self.joined = False
        self._thought: str | None = None
        self.lineno = 0

    def parse_call(
        self, idx: int, call: str, line: str, final: bool = True
    ) -> PlanItem | _NeedMore:
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
        is_join = _JOIN.match(call) is not None
        tree = None if is_join else _to_ast(call, final)
        if tree is NEED_MORE:
            return NEED_MORE
        thought, self._thought = self._thought, None
        self.seen.add(idx)
        self.last_idx = idx
        if is_join:
            self.joined = True
            return Join(thought)

        def error(message: str) -> PlanLineError:
            return PlanLineError(message=message, line=line, idx=idx, lineno=self.lineno)

        if isinstance(tree, str):
            return error(tree)
        assert isinstance(tree, ast.Expression)
        node = tree.body
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            return error("expected `tool_name(arguments)`")
        name = node.func.id
        tool = self.registry.get(name)
        if tool is None:
            return error(f"unknown tool {name!r}; available: {', '.join(self.registry.names())}")
        refs: set[int] = set()
        try:
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords
            ):
                raise ValueError("'*' and '**' unpacking are not allowed in plans")
            args = [_literal(a, refs) for a in node.args]
            kwargs = {k.arg: _literal(k.value, refs) for k in node.keywords if k.arg is not None}
            bound = tool.bind(args, kwargs)
        except (ValueError, ToolError) as exc:
            return error(str(exc))
        except RecursionError:
            return error("arguments are nested too deeply")
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
                if not refs or not has_refs(value):
                    tool.check_field(key, value)
        except ToolError as exc:
            return error(str(exc))
        return TaskSpec(
            idx=idx, tool=name, args=bound, deps=tuple(sorted(refs)), line=line, thought=thought
        )

    def parse_line(self, line: str, final: bool = True) -> PlanItem | _NeedMore | None:
        """One complete line (or a multi-line call) -> an item, None for prose, or
        NEED_MORE when a numbered call is still open and `final` is false."""
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
        return self.parse_call(int(m.group(1)), m.group(2), stripped, final)

    def finish(self) -> Iterator[PlanLineError]:
        if not self.joined:
            yield PlanLineError(
                "the plan ended without join(); it must end with a join() line",
                "",
                None,
                self.lineno,
            )


def parse_plan(text: str, registry: ToolRegistry) -> list[PlanItem]:
    """Parse a whole plan at once (same rules as the streaming parser)."""
    from perfsmith.planner.stream import StreamingPlanParser

    parser = StreamingPlanParser(registry)
    items = parser.feed(text)
    items.extend(parser.close())
    return items

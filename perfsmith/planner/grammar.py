"""An EBNF grammar (xgrammar's dialect) for plans in LLMCompiler's numbered form, over one
registry's tools: with constrained decoding even a small local model writes a plan the
parser accepts. Each call names a tool of the registry with its own parameters, by
keyword, in signature order (required ones always, optional ones maybe), each with a
literal of the parameter's type or a ``$N`` reference. Ids increasing and references
pointing backwards remain the parser's checks."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from perfsmith.tools.registry import Tool, ToolRegistry

MAX_CALLS = 6

_RULES = r"""
thought ::= "Thought: " [^\n]{0,200} "\n"
id ::= [1-9]
ref ::= "$" [1-9]
value ::= string | number | ref | list | dict | "True" | "False" | "None"
string ::= "\"" ([^"\\\n$] | "\\" ["\\n] | ref){0,120} "\""
integer ::= "-"? [0-9]{1,9}
number ::= integer ("." [0-9]{1,9})?
boolean ::= "True" | "False"
list ::= "[" (value (", " value){0,7})? "]"
dict ::= "{" (string ": " value (", " string ": " value){0,7})? "}"
"""


class _Rules:
    """Named rules for parameter types, nested ones included (``dict[str, list[int]]``)."""

    SCALARS: typing.ClassVar[dict[Any, str]] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        list: "list",
        dict: "dict",
        type(None): '"None"',
    }

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._named: dict[str, str] = {}

    def _name(self, body: str) -> str:
        if body not in self._named:
            self._named[body] = f"t{len(self._named)}"
            self.lines.append(f"{self._named[body]} ::= {body}")
        return self._named[body]

    def typed(self, annotation: Any) -> str:
        """A rule (name or group) for a literal of ``annotation``'s type."""
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if origin is typing.Literal:  # enumerated values: only those can be written
            written = [json.dumps(a) if isinstance(a, str) else repr(a) for a in args]
            return "(" + " | ".join(json.dumps(w) for w in written) + ")"
        if origin in (typing.Union, types.UnionType):
            return "(" + " | ".join(self.typed(a) for a in args) + ")"
        if origin is list and args:
            item = self.typed(args[0])
            return self._name(f'"[" ({item} (", " {item}){{0,7}})? "]"')
        if origin is dict and len(args) == 2:
            value = self.typed(args[1])
            return self._name(f'"{{" (string ": " {value} (", " string ": " {value}){{0,7}})? "}}"')
        if annotation in self.SCALARS:
            return self.SCALARS[annotation]
        return "value"

    def param(self, annotation: Any) -> str:
        rule = self.typed(annotation)
        return "value" if rule == "value" else f"({rule} | ref)"


def _call_rule(index: int, tool: Tool, rules: _Rules) -> str:
    fields = tool.args_model.model_fields
    required = [p for p in tool.params if p in tool.required]
    optional = [p for p in tool.params if p not in tool.required]

    def kw(name: str) -> str:
        return f"{json.dumps(name + '=')} {rules.param(fields[name].annotation)}"

    body = ' ", " '.join(kw(p) for p in required)
    if required:
        body += "".join(f' (", " {kw(p)})?' for p in optional)
    elif optional:
        tail = ""
        for p in reversed(optional):
            tail = f'{kw(p)} (", " {tail})?' if tail else kw(p)
        body = f"({tail})?"
    return f'call_{index} ::= {json.dumps(tool.name + "(")} {body} ")"'


def plan_grammar(registry: ToolRegistry, *, max_calls: int = MAX_CALLS) -> str:
    """Grammar of a plan: an optional thought, 1..max_calls calls to ``registry``'s tools,
    then ``join()``."""
    tools = [registry.get(n) for n in registry.names()]
    if not tools:
        raise ValueError("a plan grammar needs at least one tool")
    lines = [
        f'root ::= thought? call{{1,{max_calls}}} "join()"',
        'call ::= id ". " (' + " | ".join(f"call_{i}" for i in range(len(tools))) + ') "\\n"',
    ]
    rules = _Rules()
    lines += [_call_rule(i, t, rules) for i, t in enumerate(tools) if t is not None]
    return "\n".join(lines + rules.lines) + _RULES

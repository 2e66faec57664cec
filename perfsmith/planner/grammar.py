"""An EBNF grammar (xgrammar's dialect) for plans in LLMCompiler's numbered form, over one
registry's tools: with constrained decoding even a small local model writes a plan the
parser accepts. Ids increasing and references pointing backwards are the parser's checks;
the grammar fixes the shape, the tool names and the literal syntax."""

from __future__ import annotations

import json

from perfsmith.tools.registry import ToolRegistry

MAX_CALLS = 16

_RULES = r"""
thought ::= "Thought: " [^\n]{0,300} "\n"
call ::= id ". " tool "(" args? ")\n"
id ::= [1-9] [0-9]?
args ::= arg (", " arg){0,7}
arg ::= (name "=")? value
name ::= [a-z_] [a-z0-9_]{0,30}
value ::= string | number | ref | list | dict | "True" | "False" | "None"
ref ::= "$" [1-9] [0-9]?
string ::= "\"" ([^"\\\n$] | "\\" ["\\n] | ref){0,400} "\""
number ::= "-"? [0-9]{1,12} ("." [0-9]{1,12})?
list ::= "[" (value (", " value){0,15})? "]"
dict ::= "{" (string ": " value (", " string ": " value){0,15})? "}"
"""


def plan_grammar(registry: ToolRegistry, *, max_calls: int = MAX_CALLS) -> str:
    """Grammar of a plan: an optional thought, 1..max_calls calls to ``registry``'s tools,
    then ``join()``."""
    names = registry.names()
    if not names:
        raise ValueError("a plan grammar needs at least one tool")
    tools = " | ".join(json.dumps(n) for n in names)
    root = f'root ::= thought? call{{1,{max_calls}}} "join()"'
    return f"{root}\ntool ::= {tools}{_RULES}"

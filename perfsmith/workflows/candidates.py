"""Candidate sources: code pulled out of an LLM reply, spliced into the target's module so
that its imports and helpers stay, and deduplicated by a hash of the normalized code."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from perfsmith.errors import CandidateError
from perfsmith.llm.base import ChatMessage, ChatModel, GenerationOptions
from perfsmith.verifiers.python.target import Target, defined_names, find_definition

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(reply: str) -> str:
    """The Python code of an LLM reply: the fenced block that parses and is longest, or
    the whole reply when it parses as it is."""
    blocks: list[str] = [str(b) for b in _FENCE.findall(reply) if _parses(str(b))]
    if blocks:
        return max(blocks, key=len).strip("\n") + "\n"
    if "```" in reply:
        # an unterminated fence: a reply cut off by max_tokens
        tail = reply.split("```", 1)[1].split("\n", 1)[-1]
        if _parses(tail):
            return tail.strip("\n") + "\n"
    if _parses(reply):
        return reply.strip("\n") + "\n"
    raise CandidateError("the reply holds no Python code that parses")


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return bool(code.strip())


def splice(module_source: str, function: str, code: str) -> str:
    """``module_source`` with the definition of ``function`` (a top-level function, or
    ``Class.method``) replaced by ``code``, which must define it; its other definitions
    and imports come along (for a method: placed before the class)."""
    try:
        new_tree = ast.parse(code)
    except SyntaxError as exc:
        raise CandidateError(
            f"the candidate has a syntax error on line {exc.lineno}: {exc.msg}"
        ) from exc
    owner, _, name = function.rpartition(".")
    if owner:
        return _splice_method(module_source, owner, name, code, new_tree)
    if function not in defined_names(new_tree):
        names = ", ".join(defined_names(new_tree)) or "nothing"
        raise CandidateError(f"the candidate does not define {function!r} (it defines: {names})")
    tree = ast.parse(module_source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            end = node.end_lineno or node.lineno
            lines = module_source.splitlines(keepends=True)
            return "".join(lines[:start]) + code.rstrip("\n") + "\n" + "".join(lines[end:])
    raise CandidateError(f"the target module defines no function {function!r}")


def _span(node: ast.stmt) -> tuple[int, int]:
    """0-based first line (decorators included) and end line (exclusive) of ``node``."""
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)]) - 1, node.end_lineno or node.lineno


def _splice_method(
    module_source: str, owner: str, name: str, code: str, new_tree: ast.Module
) -> str:
    """Replace method ``owner.name``: the candidate's ``def name`` (at top level, or in a
    class ``owner`` it wrote around it) goes into the class, indented as the old one; the
    candidate's other top-level code (imports, helpers) goes before the class."""
    new_def = find_definition(new_tree, f"{owner}.{name}") or find_definition(new_tree, name)
    if new_def is None:
        names = ", ".join(defined_names(new_tree)) or "nothing"
        raise CandidateError(f"the candidate does not define {name!r} (it defines: {names})")
    tree = ast.parse(module_source)
    old_def = find_definition(tree, f"{owner}.{name}")
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner)
    if old_def is None:
        raise CandidateError(f"the target module defines no method {owner}.{name}")
    code_lines = code.splitlines(keepends=True)
    first, last = _span(new_def)
    method = textwrap.dedent("".join(code_lines[first:last]))
    # the method keeps what makes it a class or static method if the candidate dropped it
    kept = {ast.unparse(d) for d in new_def.decorator_list}
    for d in old_def.decorator_list:
        if ast.unparse(d) in ("classmethod", "staticmethod") and ast.unparse(d) not in kept:
            method = f"@{ast.unparse(d)}\n" + method
    holder = (
        new_def
        if new_def in new_tree.body
        else next(n for n in new_tree.body if isinstance(n, ast.ClassDef) and n.name == owner)
    )
    a, b = _span(holder)
    helpers = "".join(code_lines[:a] + code_lines[b:]).strip("\n")
    lines = module_source.splitlines(keepends=True)
    indent = " " * old_def.col_offset
    body = textwrap.indent(method.rstrip("\n") + "\n", indent)
    start, end = _span(old_def)
    lines[start:end] = [body]
    if helpers:
        cls_start, _ = _span(cls)
        lines[cls_start:cls_start] = [helpers + "\n\n\n"]
    return "".join(lines)


@dataclass(frozen=True)
class Candidate:
    """A module defining the target function, ready for the verifiers."""

    id: int
    origin: str
    code: str  # what the proposer wrote (the function and what it needs)
    module: str  # the whole module the verifiers run
    hash: str

    def target(self, function: str) -> Target:
        return Target(
            path=Path(f"perfsmith_candidate_{self.id}.py"), function=function, source=self.module
        )


async def ask_for_code(llm: ChatModel, system: str, prompt: str, max_tokens: int) -> str:
    """One proposal: the LLM's reply to ``prompt`` under ``system``, its code block
    extracted (CandidateError when it has none)."""
    reply = await llm.complete(
        [ChatMessage(role="system", content=system), ChatMessage(role="user", content=prompt)],
        GenerationOptions(purpose="propose", max_tokens=max_tokens, temperature=0.2),
    )
    return extract_code(reply.text)

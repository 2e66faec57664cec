"""Candidate sources: code pulled out of an LLM reply, spliced into the target's module so
that its imports and helpers stay, and deduplicated by a hash of the normalized code."""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from perfsmith.errors import PerfsmithError
from perfsmith.llm.base import ChatMessage, ChatModel, GenerationOptions
from perfsmith.verifiers.target import Target, defined_names

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


class CandidateError(PerfsmithError):
    """A candidate that cannot be verified: no code, a syntax error, the function missing."""


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
    """``module_source`` with the top-level definition of ``function`` replaced by
    ``code`` (which must define it; its other definitions and imports come along)."""
    try:
        new_tree = ast.parse(code)
    except SyntaxError as exc:
        raise CandidateError(
            f"the candidate has a syntax error on line {exc.lineno}: {exc.msg}"
        ) from exc
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


def source_hash(code: str) -> str:
    """Equal for sources that differ only in comments, blank lines and formatting."""
    try:
        normalized = ast.dump(ast.parse(code))
    except SyntaxError:
        normalized = code
    return hashlib.sha256(normalized.encode()).hexdigest()


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


def function_source(module_source: str, function: str) -> str:
    tree = ast.parse(module_source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            segment = ast.get_source_segment(module_source, node, padded=False)
            if segment is not None:
                decorators = "".join(f"@{ast.unparse(d)}\n" for d in node.decorator_list)
                return decorators + segment + "\n"
    raise CandidateError(f"no function {function!r}")


async def ask_for_code(llm: ChatModel, system: str, prompt: str, max_tokens: int) -> str:
    """One proposal: the LLM's reply to ``prompt`` under ``system``, its code block
    extracted (CandidateError when it has none)."""
    reply = await llm.complete(
        [ChatMessage(role="system", content=system), ChatMessage(role="user", content=prompt)],
        GenerationOptions(purpose="propose", max_tokens=max_tokens, temperature=0.2),
    )
    return extract_code(reply.text)

"""The rewrite catalogue: the classic Python performance anti-patterns, found on the
syntax tree and rewritten, each rewrite a candidate for the verifiers (never a claim).

``findings`` says which patterns a function shows and where (for the report and for the
model's proposal prompt); ``rewrites`` returns one candidate per rule that applies and,
when several apply, one with all of them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from perfsmith.tools.rewrites.analysis import Scope, Tree
from perfsmith.tools.rewrites.base import Emit, ModuleInfo, Rule, Site
from perfsmith.tools.rewrites.containers import (
    COUNT,
    INDEX,
    MEMBERSHIP,
    SLICE_SUM,
    CountingLoopToCounter,
    GrownListMembership,
    InsertFrontToAppend,
    PopFrontToDeque,
)
from perfsmith.tools.rewrites.loops import (
    AccumulateToSum,
    HoistInvariant,
    HoistModuleAttribute,
    IndexLoopToIteration,
    NestedLoopToIndex,
    StringConcatToJoin,
)
from perfsmith.tools.rewrites.ordering import SortedEndToMinMax, SortedPrefixToHeap
from perfsmith.tools.rewrites.recursion import MemoizeRecursion
from perfsmith.tools.rewrites.regex import PrecompileRegex
from perfsmith.verifiers.python.target import find_definition

# In the order a combined rewrite applies them: rules that change what a loop does come
# before those that tune what is left inside it; the cache for recursion wraps the body
# last (the other rules do not look inside the cached inner function).
RULES: tuple[Rule, ...] = (
    CountingLoopToCounter(),
    NestedLoopToIndex(),
    GrownListMembership(),
    PopFrontToDeque(),
    InsertFrontToAppend(),
    StringConcatToJoin(),
    SortedEndToMinMax(),
    SortedPrefixToHeap(),
    HoistInvariant(),
    MEMBERSHIP,
    COUNT,
    INDEX,
    SLICE_SUM,
    IndexLoopToIteration(),
    AccumulateToSum(),
    PrecompileRegex(),
    HoistModuleAttribute(),
    MemoizeRecursion(),
)
RULE_IDS = tuple(r.id for r in RULES)


class RewriteError(ValueError):
    """The source or the function cannot be analysed."""


@dataclass
class Rewrite:
    """A candidate from the catalogue: the code that replaces the function (imports and
    helpers included) and the rules behind it."""

    rules: tuple[str, ...]
    code: str
    sites: list[dict[str, Any]] = field(default_factory=list)

    @property
    def origin(self) -> str:
        if len(self.rules) == 1:
            return f"catalogue:{self.rules[0]}"
        return f"catalogue:{len(self.rules)} rules"


def _function(module: ast.Module, function: str) -> Scope:
    node = find_definition(module, function)
    if node is None:
        raise RewriteError(f"no top-level function or method {function!r}")
    return node


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise RewriteError(f"syntax error on line {exc.lineno}: {exc.msg}") from exc


def _rule_sites(rule: Rule, fn: Scope, info: ModuleInfo) -> tuple[Tree, list[Site]]:
    tree = Tree.of(fn)
    try:
        return tree, rule.find(tree, info)
    except (ValueError, KeyError, RecursionError):  # a shape a rule did not foresee: skip it
        return tree, []


def findings(source: str, function: str, rules: tuple[Rule, ...] = RULES) -> list[Site]:
    """Every site of every rule in ``function``, by line."""
    module = _parse(source)
    info = ModuleInfo.of(module)
    out: list[Site] = []
    for rule in rules:
        out += _rule_sites(rule, _function(module, function), info)[1]
    return sorted(out, key=lambda s: (s.line, s.rule))


def _apply(rule: Rule, fn: Scope, info: ModuleInfo, emit: Emit) -> tuple[Scope, list[Site]]:
    """``fn`` with ``rule`` applied (a new tree), and the sites it rewrote."""
    tree, sites = _rule_sites(rule, fn, info)
    if not sites:
        return fn, []
    try:
        changed = rule.apply(tree, sites, emit)
        text = ast.unparse(ast.fix_missing_locations(tree.fn))
        new = ast.parse(text).body[0]
    except (ValueError, KeyError, AttributeError, SyntaxError, RecursionError):
        return fn, []
    assert isinstance(new, ast.FunctionDef | ast.AsyncFunctionDef)
    return (new, sites) if changed else (fn, [])


def rewrites(source: str, function: str, rules: tuple[Rule, ...] = RULES) -> list[Rewrite]:
    """One candidate per rule that applies to ``function``, and one with all of them
    (applied in ``rules`` order) when more than one applies."""
    module = _parse(source)
    info = ModuleInfo.of(module)
    out: list[Rewrite] = []
    for rule in rules:
        fn = _function(_parse(source), function)
        emit = Emit(fn, info)
        new, sites = _apply(rule, fn, info, emit)
        if sites:
            out.append(Rewrite((rule.id,), emit.render(new), [s.as_dict() for s in sites]))
    if len(out) > 1:
        fn = _function(module, function)
        emit = Emit(fn, info)
        applied: list[str] = []
        all_sites: list[dict[str, Any]] = []
        for rule in rules:
            fn, sites = _apply(rule, fn, info, emit)
            if sites:
                applied.append(rule.id)
                all_sites += [s.as_dict() for s in sites]
        if len(applied) > 1:
            out.append(Rewrite(tuple(applied), emit.render(fn), all_sites))
    return out

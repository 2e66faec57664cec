"""Rules for recursion that solves the same subproblem again and again."""

from __future__ import annotations

import ast
import copy

from perfsmith.tools.rewrites.analysis import (
    Tree,
    bound_names,
    is_name,
    mutated_names,
    parameters,
    pure_call,
)
from perfsmith.tools.rewrites.base import Emit, ModuleInfo, Site
from perfsmith.tools.rewrites.nodes import attr, call, name_load

_UNHASHABLE = {"list", "dict", "set", "List", "Dict", "Set", "bytearray"}


class MemoizeRecursion:
    """A function that calls itself more than once per call, on hashable arguments:
    exponential work. A cache that lives for one top-level call (not across calls: a
    cache kept between calls would make repeated timing look faster than any real call)
    makes it polynomial."""

    id = "memoize-recursion"
    title = "recursion that solves the same subproblem again: a cache for the call"

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]:
        fn = tree.fn
        if not module.module_free("functools") or isinstance(fn, ast.AsyncFunctionDef):
            return []
        if fn.decorator_list or fn.args.vararg or fn.args.kwarg:
            return []
        calls = [
            n
            for n in ast.walk(fn)
            if isinstance(n, ast.Call) and is_name(n.func, fn.name) and tree.in_own_scope(n)
        ]
        if len(calls) < 2:
            return []
        params = set(parameters(fn))
        for node in ast.walk(fn):
            if isinstance(node, ast.Yield | ast.YieldFrom | ast.Global | ast.Nonlocal):
                return []
        if params & (bound_names(fn) | mutated_names(fn, trusted=fn.name)):
            return []  # arguments rebound or changed: the cache key would not name the work
        for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
            if a.annotation is not None and ast.unparse(a.annotation).split("[")[0] in _UNHASHABLE:
                return []
        if fn.name in bound_names(fn):
            return []
        for node in ast.walk(fn):  # a cache skips calls: only pure work may be skipped
            if (
                isinstance(node, ast.Call)
                and not is_name(node.func, fn.name)
                and not pure_call(node)
            ):
                return []
        return [
            Site(
                self.id,
                calls[0].lineno,
                f"{fn.name}() calls itself {len(calls)} times per call with arguments it may "
                "have seen before: cache results for the duration of one call",
                fn,
            )
        ]

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        if not sites:
            return False
        fn = tree.fn
        functools = emit.need_import("functools")
        inner = copy.deepcopy(fn)
        inner.decorator_list = [attr(functools, "cache")]
        inner.returns = None
        a = fn.args
        # the outer function keeps the signature and defaults; it hands every argument on
        args = [name_load(p.arg) for p in [*a.posonlyargs, *a.args]]
        keywords = {p.arg: name_load(p.arg) for p in a.kwonlyargs}
        fn.body = [inner, ast.Return(call(fn.name, *args, **keywords))]
        return True

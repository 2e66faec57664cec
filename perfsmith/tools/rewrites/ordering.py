"""Rules for sorting more than the result needs: the smallest or largest item, or the
first k, taken from a fully sorted copy."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from perfsmith.tools.rewrites.analysis import Tree, bound_names, is_name
from perfsmith.tools.rewrites.base import Emit, ModuleInfo, NodeRule, Site
from perfsmith.tools.rewrites.nodes import attr, call


def _sorted_call(node: ast.AST, tree: Tree, module: ModuleInfo) -> ast.Call | None:
    if (
        isinstance(node, ast.Call)
        and is_name(node.func, "sorted")
        and len(node.args) == 1
        and not isinstance(node.args[0], ast.Starred)
        and all(k.arg in ("key", "reverse") for k in node.keywords)
        and "sorted" not in bound_names(tree.fn)
        and "sorted" not in module.names
    ):
        return node
    return None


def _reverse(node: ast.Call) -> bool | None:
    """True/False for a literal reverse= (absent: False); None when it is not a literal."""
    for k in node.keywords:
        if k.arg == "reverse":
            if isinstance(k.value, ast.Constant) and isinstance(k.value.value, bool):
                return k.value.value
            return None
    return False


def _key(node: ast.Call) -> list[ast.keyword]:
    return [k for k in node.keywords if k.arg == "key"]


def _index(node: ast.expr) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return -node.operand.value
    return None


class SortedEndToMinMax(NodeRule):
    """`sorted(xs)[0]` / `sorted(xs)[-1]` sorts everything to read one end."""

    id = "sorted-end-to-min-max"
    title = "`sorted(xs)[0]` or `[-1]`: min() or max() reads the list once"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return not any(n in bound_names(tree.fn) | module.names for n in ("min", "max"))

    def match(self, node: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not (isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load)):
            return
        inner = _sorted_call(node.value, tree, module)
        reverse = _reverse(inner) if inner is not None else None
        if inner is None or reverse is None:
            return
        end = _index(node.slice)
        # ties: sorted() is stable and min()/max() return the first extreme item, so
        # with a key only the end that keeps the first of equal items is the same
        if end == 0:
            fn = "max" if reverse else "min"
        elif end == -1 and not _key(inner):
            fn = "min" if reverse else "max"
        else:
            return
        note = (
            f"`{ast.unparse(node)}` sorts everything to read one end: {fn}() reads each item once"
        )
        yield self.site(node, note, last=end == -1, inner=inner)

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        inner = site.data["inner"]
        options = {k.arg: k.value for k in inner.keywords if k.arg is not None}
        helper = emit.helper("_sorted_last" if site.data["last"] else "_sorted_first")
        tree.replace(site.node, call(helper, inner.args[0], **options))


class SortedPrefixToHeap(NodeRule):
    """`sorted(xs)[:k]` sorts everything to keep k items; heapq keeps k as it goes
    (documented to equal `sorted(xs, key=key)[:k]`)."""

    id = "sorted-prefix-to-heapq"
    title = "`sorted(xs)[:k]`: heapq.nsmallest / nlargest keep only k items"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return module.module_free("heapq")

    def match(self, node: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and isinstance(node.slice, ast.Slice)
            and node.slice.lower is None
            and node.slice.step is None
            and node.slice.upper is not None
        ):
            return
        inner = _sorted_call(node.value, tree, module)
        reverse = _reverse(inner) if inner is not None else None
        k = _index(node.slice.upper)
        # a negative bound means "all but the last": not a heap's job
        if inner is None or reverse is None or k is None or k < 0:
            return
        note = f"`{ast.unparse(node)}` sorts everything to keep {k} item(s): heapq keeps only {k}"
        yield self.site(node, note, fn="nlargest" if reverse else "nsmallest", inner=inner, k=k)

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        inner = site.data["inner"]
        new = call(
            attr(emit.need_import("heapq"), site.data["fn"]),
            ast.Constant(site.data["k"]),
            inner.args[0],
            **{k.arg: k.value for k in _key(inner) if k.arg is not None},
        )
        tree.replace(site.node, new)

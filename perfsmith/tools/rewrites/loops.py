"""Rules for work a loop repeats: values that do not change between passes, lookups by
key done with a nested loop, strings built with `+`, sums accumulated one item at a time,
index loops that only read the list, module attributes looked up on every call."""

from __future__ import annotations

import ast
import copy
from collections.abc import Iterator

from perfsmith.tools.rewrites.analysis import (
    COSTLY_PURE_CALLS,
    Tree,
    bound_names,
    changed_names,
    is_name,
    is_pure,
    mutated_names,
    names_read,
)
from perfsmith.tools.rewrites.base import Emit, ModuleInfo, NodeRule, Site
from perfsmith.tools.rewrites.nodes import assign, attr, call, loop_items, name_load, name_store

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp)


def _comprehension_vars(node: ast.AST) -> set[str]:
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.comprehension):
            out |= bound_names(n.target)
    return out


class HoistInvariant:
    """A costly pure value (sorted, set, a comprehension...) recomputed on every pass of
    a loop that changes none of its inputs: compute it once before the loop."""

    id = "hoist-loop-invariant"
    title = "a value recomputed on every pass of a loop that changes none of its inputs"

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]:
        sites: list[Site] = []
        chosen: set[int] = set()
        for node in ast.walk(tree.fn):  # breadth first: outer expressions come first
            if not tree.in_own_scope(node):
                continue
            costly = isinstance(node, _COMPREHENSIONS) or (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in COSTLY_PURE_CALLS
                and module.builtin_free(tree, node.func.id)
                and (node.args or node.keywords)
            )
            if not costly or not is_pure(node):
                continue
            if any(id(a) in chosen for a in tree.ancestors(node)):
                continue
            deps = names_read(node) - _comprehension_vars(node)
            if not deps:
                continue  # constants: nothing of the loop's to save
            point = tree.hoist_point(node, deps)
            if point is None:
                continue
            chosen.add(id(node))
            sites.append(
                Site(
                    self.id,
                    getattr(node, "lineno", point.lineno),
                    f"`{ast.unparse(node)[:60]}` is computed again on every pass of the loop "
                    f"at line {point.lineno}, which changes none of its inputs: compute it once",
                    node,
                    {"point": point},
                )
            )
        return sites

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        done: dict[tuple[int, str], str] = {}
        for site in sites:
            node = site.node
            assert isinstance(node, ast.expr)
            point = site.data["point"]
            key = (id(point), ast.dump(node))
            if key not in done:
                var = emit.name("_once")
                emit.helper("_UNSET")
                # Computed ahead under a guard: if it raises there (say max() of an empty
                # list before a loop that would not have run), the loop computes it as before
                guard = ast.Try(
                    body=[assign(var, node)],
                    handlers=[
                        ast.ExceptHandler(
                            type=name_load("Exception"),
                            name=None,
                            body=[assign(var, name_load("_UNSET"))],
                        )
                    ],
                    orelse=[],
                    finalbody=[],
                )
                tree.insert_before(point, [guard])
                done[key] = var
            var = done[key]
            again = copy.deepcopy(node)  # the original, computed in the loop as before
            tree.replace(
                node,
                ast.IfExp(
                    test=ast.Compare(
                        left=name_load(var), ops=[ast.Is()], comparators=[name_load("_UNSET")]
                    ),
                    body=again,
                    orelse=name_load(var),
                ),
            )
        return bool(sites)


class HoistModuleAttribute(NodeRule):
    """`math.sqrt(x)` in a hot loop looks `sqrt` up in the module on every call."""

    id = "hoist-module-attribute"
    title = "a module function looked up on every pass of a loop: bind it to a local once"

    def match(self, node: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in module.imports
            and tree.in_own_scope(node)
        ):
            return
        mod = node.func.value.id
        if mod in bound_names(tree.fn):
            return
        point = tree.hoist_point(node.func, {mod})
        if point is None or not isinstance(point, ast.For | ast.While):
            return
        yield Site(
            self.id,
            node.lineno,
            f"`{mod}.{node.func.attr}` is looked up in the module on every pass of "
            f"the loop at line {point.lineno}: bind it to a local name once",
            node.func,
            {"point": point},
        )

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        done: dict[tuple[int, str], str] = {}
        for site in sites:
            node = site.node
            assert isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            key = (id(site.data["point"]), f"{node.value.id}.{node.attr}")
            if key not in done:
                var = emit.name(f"_{node.attr}")
                tree.insert_before(
                    site.data["point"], [assign(var, attr(node.value.id, node.attr))]
                )
                done[key] = var
            tree.replace(node, name_load(done[key]))
        return bool(sites)


def _key_side(test: ast.expr, bound: set[str]) -> tuple[ast.expr, ast.expr] | None:
    """For `f(b) == g(a)` (either order), ``bound`` the inner loop's variables (b):
    (f(b), g(a))."""
    if not (
        isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
    ):
        return None
    left, right = test.left, test.comparators[0]
    for mine, other in ((left, right), (right, left)):
        if (
            not bound & names_read(other)
            and names_read(mine)
            and names_read(mine) <= bound
            and is_pure(mine, allow_calls=False)
        ):
            return mine, other
    return None


def _renamed(node: ast.AST, names: dict[str, str]) -> ast.AST:
    """A copy of ``node`` with its names replaced as ``names`` says."""
    new = copy.deepcopy(node)
    for n in ast.walk(new):
        if isinstance(n, ast.Name) and n.id in names:
            n.id = names[n.id]
    return new


class NestedLoopToIndex(NodeRule):
    """`for a in A: for b in B: if key(b) == key(a): ...` scans B for every a: group B by
    its key once, then look each a's matches up."""

    id = "nested-loop-to-dict-index"
    title = "a nested loop that looks items up by key: index the inner collection once"

    def match(self, inner: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not (
            isinstance(inner, ast.For)
            and not inner.orelse
            and isinstance(inner.target, ast.Name | ast.Tuple)
            and isinstance(inner.iter, ast.Name)
            and len(inner.body) == 1
            and isinstance(inner.body[0], ast.If)
            and tree.in_own_scope(inner)
        ):
            return
        cond = inner.body[0].test
        tests = (
            cond.values if isinstance(cond, ast.BoolOp) and isinstance(cond.op, ast.And) else [cond]
        )
        bound, coll = bound_names(inner.target), inner.iter.id
        keys = _key_side(tests[0], bound)
        if keys is None:
            return
        mine, other = keys
        point = tree.hoist_point(inner, {coll})
        outer = point if isinstance(point, ast.For | ast.While) else None
        if outer is None or changed_names(outer) & names_read(mine) - bound:
            return
        yield Site(
            self.id,
            inner.lineno,
            f"the loop at line {inner.lineno} scans {coll!r} for items whose "
            f"`{ast.unparse(mine)}` equals `{ast.unparse(other)}`, once per pass of the "
            f"loop at line {outer.lineno}: group {coll!r} by that key once",
            inner,
            {"point": outer, "mine": mine, "other": other},
        )

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        inner = site.node
        assert isinstance(inner, ast.For) and isinstance(inner.iter, ast.Name)
        coll = inner.iter.id
        index = emit.name(f"_{coll}_by_key")
        item = emit.name("_item")
        # the loop's own variables keep their values: the index uses fresh names
        fresh = {n: emit.name(f"_{n}") for n in sorted(bound_names(inner.target))}
        target = ast.unparse(_renamed(inner.target, fresh))
        key = ast.unparse(_renamed(site.data["mine"], fresh))
        build = ast.parse(
            f"{index} = {{}}\n"
            f"for {item} in {coll}:\n"
            f"    {target} = {item}\n"
            f"    {index}.setdefault({key}, []).append({item})\n"
        ).body
        tree.insert_before(site.data["point"], build)
        # the test stays: it keeps deciding, the index only skips the items that cannot match
        inner.iter = call(
            attr(index, "get"), site.data["other"], ast.Tuple(elts=[], ctx=ast.Load())
        )


def _block_init(tree: Tree, loop: ast.stmt, name: str) -> ast.Assign | None:
    """The last statement before ``loop`` in its block that binds ``name``, when it is a
    plain ``name = ...`` and nothing between rebinds it."""
    block, i = tree.body_of(loop)
    for s in reversed(block[:i]):
        if name in bound_names(s):
            if isinstance(s, ast.Assign) and len(s.targets) == 1 and is_name(s.targets[0], name):
                return s
            return None
    return None


def _spine(expr: ast.expr, name: str) -> list[ast.expr] | None:
    """`name + a + b` -> [a, b]."""
    parts: list[ast.expr] = []
    while isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        parts.append(expr.right)
        expr = expr.left
    if is_name(expr, name) and parts:
        return list(reversed(parts))
    return None


class StringConcatToJoin(NodeRule):
    """`s += piece` (or `s = s + a + b`) in a loop copies the string built so far."""

    id = "string-concat-to-join"
    title = "a string built with `+=` in a loop: collect the pieces, join once"

    def match(self, loop: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not isinstance(loop, ast.For | ast.While) or not tree.in_own_scope(loop):
            return
        if any(
            isinstance(n, ast.Return | ast.Yield | ast.YieldFrom | ast.Try) for n in ast.walk(loop)
        ):
            return
        for name in sorted(bound_names(loop)):
            init = _block_init(tree, loop, name)
            if init is None or not (
                isinstance(init.value, ast.Constant) and isinstance(init.value.value, str)
            ):
                continue
            pieces = self._pieces(loop, name)
            if pieces:
                yield Site(
                    self.id,
                    pieces[0][0].lineno,
                    f"`{ast.unparse(pieces[0][0])}` copies the whole string {name!r} "
                    "on every pass: collect the pieces in a list and join once",
                    loop,
                    {"name": name, "pieces": pieces},
                )

    @staticmethod
    def _pieces(loop: ast.stmt, name: str) -> list[tuple[ast.stmt, list[ast.expr]]] | None:
        found: list[tuple[ast.stmt, list[ast.expr]]] = []
        covered: set[int] = set()
        for s in ast.walk(loop):
            parts: list[ast.expr] | None = None
            if (
                isinstance(s, ast.AugAssign)
                and is_name(s.target, name)
                and isinstance(s.op, ast.Add)
            ):
                parts = [s.value]
                target: ast.expr = s.target
            elif isinstance(s, ast.Assign) and len(s.targets) == 1 and is_name(s.targets[0], name):
                parts = _spine(s.value, name)
                target = s.targets[0]
                if parts is None:
                    return None
            else:
                continue
            if any(name in names_read(p) for p in parts):
                return None
            found.append((s, parts))
            covered |= {id(target)} | {
                id(n)
                for n in ast.walk(s.value if isinstance(s, ast.Assign) else s)
                if is_name(n, name)
            }
        others = [n for n in ast.walk(loop) if is_name(n, name) and id(n) not in covered]
        return found if found and not others else None

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        name, loop = site.data["name"], site.node
        assert isinstance(loop, ast.stmt)
        parts_var = emit.name(f"_{name}_parts")
        tree.insert_before(
            loop, [assign(parts_var, ast.List(elts=[name_load(name)], ctx=ast.Load()))]
        )
        for stmt, pieces in site.data["pieces"]:
            if len(pieces) == 1:
                new = ast.Expr(call(attr(parts_var, "append"), pieces[0]))
            else:
                new = ast.Expr(
                    call(attr(parts_var, "extend"), ast.Tuple(elts=pieces, ctx=ast.Load()))
                )
            block, i = tree.body_of(stmt)
            block[i] = new
        joined = call(attr(ast.Constant(""), "join"), name_load(parts_var))
        tree.insert_after(loop, [ast.Assign(targets=[name_store(name)], value=joined, lineno=0)])


class AccumulateToSum(NodeRule):
    """`total += f(x)` over a loop: sum() runs the same additions in C."""

    id = "accumulate-to-sum"
    title = "a number accumulated one item at a time: sum() over a generator"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return module.builtin_free(tree, "sum")

    def match(self, loop: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not (
            isinstance(loop, ast.For)
            and not loop.orelse
            and len(loop.body) == 1
            and tree.in_own_scope(loop)
        ):
            return
        s = loop.body[0]
        if (
            isinstance(s, ast.AugAssign)
            and isinstance(s.op, ast.Add)
            and isinstance(s.target, ast.Name)
        ):
            name, term = s.target.id, s.value
        elif (
            isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
        ):
            parts = _spine(s.value, s.targets[0].id)
            if parts is None or len(parts) != 1:
                return
            name, term = s.targets[0].id, parts[0]
        else:
            return
        if name in names_read(term) or not is_pure(term) or name in names_read(loop.iter):
            return
        init = _block_init(tree, loop, name)
        if init is None or not (
            isinstance(init.value, ast.Constant) and type(init.value.value) in (int, float)
        ):
            return
        yield Site(
            self.id,
            s.lineno,
            f"{name!r} is accumulated one item at a time in the loop at line "
            f"{loop.lineno}: sum() does the same additions in C",
            loop,
            {"name": name, "term": term},
        )

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        loop = site.node
        assert isinstance(loop, ast.For)
        name, term = site.data["name"], site.data["term"]
        items = loop_items(loop, term)
        block, i = tree.body_of(loop)
        block[i] = ast.Assign(
            targets=[name_store(name)], value=call("sum", items, name_load(name)), lineno=0
        )


class IndexLoopToIteration(NodeRule):
    """`for i in range(len(xs)): ... xs[i] ...` where `i` only indexes `xs`."""

    id = "index-loop-to-iteration"
    title = "`for i in range(len(xs))` that only reads `xs[i]`: iterate over xs directly"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return module.builtin_free(tree, "range") and module.builtin_free(tree, "len")

    def match(self, loop: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not (
            isinstance(loop, ast.For)
            and isinstance(loop.target, ast.Name)
            and isinstance(loop.iter, ast.Call)
            and is_name(loop.iter.func, "range")
            and len(loop.iter.args) == 1
            and isinstance(loop.iter.args[0], ast.Call)
            and is_name(loop.iter.args[0].func, "len")
            and len(loop.iter.args[0].args) == 1
            and isinstance(loop.iter.args[0].args[0], ast.Name)
            and tree.in_own_scope(loop)
        ):
            return
        i, xs = loop.target.id, loop.iter.args[0].args[0].id
        if xs in changed_names(loop) or "*" in mutated_names(loop):
            return
        uses = [n for n in ast.walk(tree.fn) if is_name(n, i)]
        reads = [n for n in uses if n is not loop.target]
        if not reads or not all(
            isinstance(tree.parents[n], ast.Subscript)
            and tree.parents[n].slice is n  # type: ignore[attr-defined]
            and is_name(tree.parents[n].value, xs)  # type: ignore[attr-defined]
            and isinstance(tree.parents[n].ctx, ast.Load)  # type: ignore[attr-defined]
            and any(a is loop for a in tree.ancestors(n))
            for n in reads
        ):
            return
        yield Site(
            self.id,
            loop.lineno,
            f"`for {i} in range(len({xs}))` only reads `{xs}[{i}]`: iterate over {xs!r} directly",
            loop,
            {"i": i, "xs": xs, "reads": reads},
        )

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        loop = site.node
        assert isinstance(loop, ast.For)
        item = emit.name(f"{site.data['xs']}_item")
        loop.target = name_store(item)
        loop.iter = name_load(site.data["xs"])
        for n in site.data["reads"]:
            tree.replace(tree.parents[n], name_load(item))

"""Rules for containers used the slow way: scanning a list on every pass of a loop
(`in`, `count`, `index`, slice sums), a list grown while it is searched, a list used as a
queue, a list built from its front, a dictionary counted by hand."""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from perfsmith.tools.rewrites.analysis import (
    READ_ONLY_CALLS,
    Tree,
    bound_names,
    dotted,
    is_name,
    is_pure,
    method_call,
    names_read,
)
from perfsmith.tools.rewrites.base import Emit, ModuleInfo, NodeRule, Site
from perfsmith.tools.rewrites.nodes import assign, attr, call, loop_items, name_load


def _set_like(tree: Tree, name: str) -> bool:
    """``name`` is visibly a set or dict already (then `in` is fast)."""
    for n in ast.walk(tree.fn):
        if isinstance(n, ast.Assign) and any(is_name(t, name) for t in n.targets):
            v = n.value
            if isinstance(v, ast.Set | ast.Dict | ast.SetComp | ast.DictComp):
                return True
            if (
                isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id in {"set", "frozenset", "dict"}
            ):
                return True
        if isinstance(n, ast.arg | ast.AnnAssign):
            ann = n.annotation
            label = n.arg if isinstance(n, ast.arg) else getattr(n.target, "id", None)
            if label == name and ann is not None:
                text = ast.unparse(ann)
                if text.split("[")[0] in {"set", "frozenset", "dict", "Set", "Dict", "Mapping"}:
                    return True
    return False


@dataclass
class HoistedLookup:
    """An expression over a list name, inside a loop that never changes the list,
    answered from a structure built once before the loop (``helper(L)``)."""

    id: str
    title: str
    helper: str
    suffix: str
    # node -> the list (a name, or attributes on one: `self.items`) when the node is this
    # rule's pattern
    match: Callable[[ast.AST, Tree, ModuleInfo], ast.expr | None]
    # (node, variable holding the structure) -> replacement expression
    build: Callable[[ast.AST, str], ast.expr]
    fix: str  # what the rewrite builds, for the finding's note
    extra_helpers: tuple[str, ...] = ()

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]:
        sites: list[Site] = []
        for node in ast.walk(tree.fn):
            if not tree.in_own_scope(node):
                continue
            found = self.match(node, tree, module)
            path = dotted(found) if found is not None else None
            if found is None or path is None:
                continue
            name = path
            point = tree.hoist_point(node, {path.split(".")[0]})
            if point is None:
                continue
            sites.append(
                Site(
                    self.id,
                    getattr(node, "lineno", point.lineno),
                    f"`{ast.unparse(node)}` scans {name!r} on every pass of the loop at "
                    f"line {point.lineno}: {self.fix}",
                    node,
                    {"name": name, "point": point, "list": found},
                )
            )
        return sites

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        built: dict[tuple[int, str], str] = {}
        for site in sites:
            name, point = site.data["name"], site.data["point"]
            key = (id(point), name)
            if key not in built:
                var = emit.name(f"_{name.replace('.', '_')}_{self.suffix}")
                source = copy.deepcopy(site.data["list"])
                tree.insert_before(point, [assign(var, call(emit.helper(self.helper), source))])
                built[key] = var
            tree.replace(site.node, self.build(site.node, built[key]))
            for helper in self.extra_helpers:
                emit.helper(helper)
        return bool(sites)


def _membership(node: ast.AST, tree: Tree, module: ModuleInfo) -> ast.expr | None:
    if (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In | ast.NotIn)
        and dotted(node.comparators[0]) is not None
        and not _set_like(tree, str(dotted(node.comparators[0])))
    ):
        return node.comparators[0]
    return None


def _membership_build(node: ast.AST, var: str) -> ast.expr:
    assert isinstance(node, ast.Compare)
    return ast.Compare(left=node.left, ops=node.ops, comparators=[name_load(var)])


def _method_match(method: str) -> Callable[[ast.AST, Tree, ModuleInfo], ast.expr | None]:
    def match(node: ast.AST, tree: Tree, module: ModuleInfo) -> ast.expr | None:
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and dotted(node.func.value) is not None
            and len(node.args) == 1
            and not node.keywords
            and not isinstance(node.args[0], ast.Starred)
        ):
            return None
        return node.func.value

    return match


def _method_build(node: ast.AST, var: str) -> ast.expr:
    assert isinstance(node, ast.Call)
    return call(var, node.args[0])


def _slice_sum(node: ast.AST, tree: Tree, module: ModuleInfo) -> ast.expr | None:
    if (
        isinstance(node, ast.Call)
        and is_name(node.func, "sum")
        and len(node.args) == 1
        and not node.keywords
        and isinstance(node.args[0], ast.Subscript)
        and isinstance(node.args[0].value, ast.Name)
        and isinstance(node.args[0].slice, ast.Slice)
        and node.args[0].slice.step is None
        and module.builtin_free(tree, "sum")
    ):
        return node.args[0].value
    return None


def _slice_sum_build(node: ast.AST, var: str) -> ast.expr:
    assert isinstance(node, ast.Call) and isinstance(node.args[0], ast.Subscript)
    s = node.args[0].slice
    assert isinstance(s, ast.Slice)
    none = ast.Constant(None)
    return call("_slice_sum", name_load(var), s.lower or none, s.upper or none)


MEMBERSHIP = HoistedLookup(
    "list-membership-to-set",
    "`x in some_list` inside a loop: test against a set built once",
    "_as_lookup",
    "lookup",
    _membership,
    _membership_build,
    "test against a set built once before the loop",
)
COUNT = HoistedLookup(
    "count-in-loop-to-counter",
    "`some_list.count(x)` inside a loop: count everything once (collections.Counter)",
    "_count_lookup",
    "count",
    _method_match("count"),
    _method_build,
    "count every item once before the loop (collections.Counter)",
)
INDEX = HoistedLookup(
    "index-in-loop-to-dict",
    "`some_list.index(x)` inside a loop: map each item to its first position once",
    "_index_lookup",
    "index",
    _method_match("index"),
    _method_build,
    "map each item to its first position once before the loop",
)
SLICE_SUM = HoistedLookup(
    "slice-sums-to-prefix-sums",
    "`sum(items[a:b])` inside a loop: prefix sums built once, each sum in O(1)",
    "_prefix_sums",
    "sums",
    _slice_sum,
    _slice_sum_build,
    "build prefix sums once, then each slice sum is one subtraction",
    ("_slice_sum",),
)


def _uses(tree: Tree, name: str) -> list[ast.Name]:
    return [n for n in ast.walk(tree.fn) if isinstance(n, ast.Name) and n.id == name]


def _single_binding(tree: Tree, name: str) -> ast.Assign | None:
    """The one statement ``name = ...`` of the function (None when bound otherwise too,
    or in a nested scope)."""
    stores = [n for n in _uses(tree, name) if not isinstance(n.ctx, ast.Load)]
    if len(stores) != 1 or not tree.in_own_scope(stores[0]):
        return None
    parent = tree.parents[stores[0]]
    if isinstance(parent, ast.Assign) and parent.targets == [stores[0]]:
        return parent
    return None


def _read_use(tree: Tree, use: ast.Name) -> bool:
    """A use that neither changes the list nor lets it escape while the function runs."""
    parent = tree.parents[use]
    if isinstance(parent, ast.For | ast.comprehension) and parent.iter is use:
        return True
    if isinstance(parent, ast.Call) and use in parent.args:
        return is_name(parent.func) and parent.func.id in READ_ONLY_CALLS - {"iter", "print"}  # type: ignore[attr-defined]
    if isinstance(parent, ast.Subscript) and parent.value is use:
        return isinstance(parent.ctx, ast.Load)
    if isinstance(parent, ast.Return):
        return True
    if isinstance(parent, ast.If | ast.While | ast.IfExp) and parent.test is use:
        return True
    return isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not)


class GrownListMembership:
    """`x in seen` where `seen` is a list the loop appends to: keep a set beside it."""

    id = "grown-list-membership-to-set"
    title = "a list searched with `in` while it grows: keep a set of its items beside it"

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]:
        names = {
            t.id
            for n in ast.walk(tree.fn)
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.List) and not n.value.elts
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        sites: list[Site] = []
        for name in sorted(names):
            init = _single_binding(tree, name)
            if init is None:
                continue
            appends: list[ast.Expr] = []
            tests: list[ast.Compare] = []
            ok = True
            for use in _uses(tree, name):
                if not isinstance(use.ctx, ast.Load):
                    continue
                if not tree.in_own_scope(use):
                    ok = False
                    break
                parent = tree.parents[use]
                append = tree.method_statement(use, "append", 1)
                if append is not None:
                    stmt = tree.parents[append]
                    assert isinstance(stmt, ast.Expr)
                    appends.append(stmt)
                elif (
                    isinstance(parent, ast.Compare)
                    and len(parent.ops) == 1
                    and isinstance(parent.ops[0], ast.In | ast.NotIn)
                    and parent.comparators[0] is use
                ):
                    tests.append(parent)
                elif not _read_use(tree, use):
                    ok = False
                    break
            if ok and appends and any(tree.repeated_by(t) for t in tests):
                sites.append(
                    Site(
                        self.id,
                        tests[0].lineno,
                        f"`{ast.unparse(tests[0])}` scans the list {name!r}, which grows in the "
                        "loop: keep a set of its items beside it",
                        init,
                        {"name": name, "appends": appends, "tests": tests},
                    )
                )
        return sites

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        for site in sites:
            name = site.data["name"]
            shadow = emit.name(f"_{name}_set")
            init = site.node
            assert isinstance(init, ast.stmt)
            tree.insert_after(init, [assign(shadow, call("set"))])
            for stmt in site.data["appends"]:
                assert isinstance(stmt.value, ast.Call)
                item = stmt.value.args[0]
                if isinstance(item, ast.Name | ast.Constant):
                    tree.insert_after(stmt, [ast.Expr(call(attr(shadow, "add"), item))])
                else:
                    tmp = emit.name("_item")
                    stmt.value.args[0] = name_load(tmp)
                    tree.insert_before(stmt, [assign(tmp, item)])
                    tree.insert_after(stmt, [ast.Expr(call(attr(shadow, "add"), name_load(tmp)))])
            for test in site.data["tests"]:
                test.comparators[0] = name_load(shadow)
        return bool(sites)


class PopFrontToDeque(NodeRule):
    """`queue.pop(0)` on a list: every pop shifts the whole list; a deque pops in O(1)."""

    id = "pop-front-to-deque"
    title = "`some_list.pop(0)` (a queue): use collections.deque and popleft()"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return module.module_free("collections")

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]:
        # one site per list, however many pops it has
        return list({s.data["name"]: s for s in super().find(tree, module)}.values())

    def match(self, node: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        found = method_call(node, "pop")
        if found is None or not tree.in_own_scope(node):
            return
        name, pop = found
        if not (len(pop.args) == 1 and _const(pop.args[0]) == 0 and tree.repeated_by(pop)):
            return
        init = _single_binding(tree, name)
        if init is None or not (
            isinstance(init.value, ast.List | ast.ListComp)
            or (isinstance(init.value, ast.Call) and is_name(init.value.func, "list"))
        ):
            return
        if all(self._queue_use(tree, u) for u in _uses(tree, name) if u is not init.targets[0]):
            note = (
                f"`{name}.pop(0)` moves every item of the list {name!r}: a deque pops from the "
                "front in constant time"
            )
            yield self.site(init, note, line=pop.lineno, name=name)

    @staticmethod
    def _queue_use(tree: Tree, use: ast.Name) -> bool:
        if not tree.in_own_scope(use):
            return False
        parent = tree.parents[use]
        grand = tree.parents.get(parent)
        if isinstance(parent, ast.Attribute) and isinstance(grand, ast.Call):
            if parent.attr in {"append", "extend"}:
                return True
            if parent.attr == "pop":
                return not grand.args or (len(grand.args) == 1 and _const(grand.args[0]) == 0)
            if parent.attr == "insert":
                return len(grand.args) == 2 and _const(grand.args[0]) == 0
            return False
        if isinstance(parent, ast.Subscript) and parent.value is use:
            return isinstance(parent.ctx, ast.Load) and _const(parent.slice) in (0, -1)
        if isinstance(parent, ast.Call) and is_name(parent.func, "len"):
            return True
        if isinstance(parent, ast.If | ast.While) and parent.test is use:
            return True
        if isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not):
            return True
        if isinstance(parent, ast.For) and parent.iter is use:
            return True
        return isinstance(parent, ast.Compare) and use in parent.comparators

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        init = site.node
        assert isinstance(init, ast.Assign)
        init.value = call(attr(emit.need_import("collections"), "deque"), init.value)
        for use in _uses(tree, site.data["name"]):
            parent = tree.parents[use]
            grand = tree.parents.get(parent)
            if not (isinstance(parent, ast.Attribute) and isinstance(grand, ast.Call)):
                continue
            if parent.attr == "pop" and grand.args:
                parent.attr, grand.args = "popleft", []
            elif parent.attr == "insert":
                parent.attr, grand.args = "appendleft", grand.args[1:]


def _const(node: ast.AST) -> object:
    if isinstance(node, ast.Constant):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int)
    ):
        return -node.operand.value
    return None


class InsertFrontToAppend(NodeRule):
    """`out.insert(0, x)` in a loop: append, then reverse once after the loop."""

    id = "insert-front-to-append-reverse"
    title = "`some_list.insert(0, x)` in a loop: append, and reverse once after the loop"

    def match(self, loop: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not isinstance(loop, ast.For | ast.While) or loop.orelse:
            return
        if not tree.in_own_scope(loop) or any(
            isinstance(n, ast.Return | ast.Yield | ast.YieldFrom | ast.Try) for n in ast.walk(loop)
        ):
            return
        for name in sorted(names_read(loop)):
            init = _single_binding(tree, name)
            if init is None or not (isinstance(init.value, ast.List) and not init.value.elts):
                continue
            if not tree.bound_before(loop, name) or any(n is init for n in ast.walk(loop)):
                continue
            inserts = []
            ok = True
            for use in (u for u in ast.walk(loop) if is_name(u, name)):
                insert = tree.method_statement(use, "insert", 2)
                if insert is not None and _const(insert.args[0]) == 0:
                    inserts.append(insert)
                else:
                    ok = False
            if ok and inserts:
                yield Site(
                    self.id,
                    inserts[0].lineno,
                    f"`{name}.insert(0, ...)` shifts the whole list on every pass: "
                    "append, and reverse once after the loop",
                    loop,
                    {"name": name, "inserts": inserts},
                )

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        for grand in site.data["inserts"]:
            assert isinstance(grand.func, ast.Attribute)
            grand.func.attr = "append"
            grand.args = grand.args[1:]
        loop = site.node
        assert isinstance(loop, ast.stmt)
        tree.insert_after(loop, [ast.Expr(call(attr(site.data["name"], "reverse")))])


def _subscript_of(node: ast.AST, name: str) -> ast.expr | None:
    if isinstance(node, ast.Subscript) and is_name(node.value, name):
        return node.slice
    return None


def _counting_key(stmts: list[ast.stmt], name: str) -> ast.expr | None:
    """The key K when ``stmts`` count K into dict ``name`` by hand, in one of the usual
    ways; None otherwise."""

    def same(a: ast.AST | None, b: ast.AST | None) -> bool:
        return a is not None and b is not None and ast.dump(a) == ast.dump(b)

    def incr(s: ast.stmt, k: ast.expr) -> bool:
        return (
            isinstance(s, ast.AugAssign)
            and isinstance(s.op, ast.Add)
            and same(_subscript_of(s.target, name), k)
            and _const(s.value) == 1
        )

    def put(s: ast.stmt, k: ast.expr, value: int) -> bool:
        return (
            isinstance(s, ast.Assign)
            and len(s.targets) == 1
            and same(_subscript_of(s.targets[0], name), k)
            and _const(s.value) == value
        )

    def tested(s: ast.stmt) -> tuple[ast.If, ast.cmpop, ast.expr] | None:
        """`if KEY in name:` (or `not in`) with one statement: the if, the test, KEY."""
        if not (isinstance(s, ast.If) and len(s.body) == 1):
            return None
        t = s.test
        if isinstance(t, ast.Compare) and len(t.ops) == 1 and is_name(t.comparators[0], name):
            return s, t.ops[0], t.left
        return None

    first = tested(stmts[0]) if stmts else None
    if len(stmts) == 1 and first is not None and len(first[0].orelse) == 1:
        s, op, k = first
        if isinstance(op, ast.In) and incr(s.body[0], k) and put(s.orelse[0], k, 1):
            return k
        if isinstance(op, ast.NotIn) and put(s.body[0], k, 1) and incr(s.orelse[0], k):
            return k
    if len(stmts) == 1 and isinstance(stmts[0], ast.Assign) and len(stmts[0].targets) == 1:
        key = _subscript_of(stmts[0].targets[0], name)
        v = stmts[0].value
        if (
            key is not None
            and isinstance(v, ast.BinOp)
            and isinstance(v.op, ast.Add)
            and _const(v.right) == 1
        ):
            got = method_call(v.left, "get")
            if (
                got is not None
                and got[0] == name
                and len(got[1].args) == 2
                and same(got[1].args[0], key)
                and _const(got[1].args[1]) == 0
            ):
                return key
    if len(stmts) == 2 and first is not None and not first[0].orelse:
        s, op, k = first
        if isinstance(op, ast.NotIn) and put(s.body[0], k, 0) and incr(stmts[1], k):
            return k
    return None


class CountingLoopToCounter(NodeRule):
    """A dictionary of counts filled by hand in a loop: collections.Counter counts in C."""

    id = "counting-loop-to-counter"
    title = "counting into a dict by hand in a loop: collections.Counter counts in C"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return module.module_free("collections")

    def match(self, loop: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        if not isinstance(loop, ast.For) or loop.orelse or not tree.in_own_scope(loop):
            return
        for name in sorted(names_read(loop)):
            key = _counting_key(loop.body, name)
            if key is None or not is_pure(key) or name in names_read(key):
                continue
            if name in names_read(loop.iter):
                continue
            block, i = tree.body_of(loop)
            start = next(
                (
                    j
                    for j in range(i - 1, -1, -1)
                    if isinstance(block[j], ast.Assign)
                    and [ast.dump(t) for t in block[j].targets]  # type: ignore[attr-defined]
                    == [ast.dump(ast.Name(id=name, ctx=ast.Store()))]
                ),
                None,
            )
            if start is None:
                continue
            init = block[start]
            assert isinstance(init, ast.Assign)
            between = block[start + 1 : i]
            fresh = isinstance(init.value, ast.Dict) and not init.value.keys
            if fresh and not any(name in names_read(s) | bound_names(s) for s in between):
                yield Site(
                    self.id,
                    loop.lineno,
                    f"the loop at line {loop.lineno} counts into {name!r} one item at "
                    "a time: collections.Counter does it in C",
                    loop,
                    {"name": name, "key": key},
                )

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        counter = attr(emit.need_import("collections"), "Counter")
        loop = site.node
        assert isinstance(loop, ast.For)
        key = site.data["key"]
        items = loop_items(loop, key)
        block, i = tree.body_of(loop)
        block[i] = ast.Expr(call(attr(site.data["name"], "update"), call(counter, items)))

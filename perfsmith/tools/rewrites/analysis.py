"""What the rewrite rules ask of a function's syntax tree: which names a piece of code
binds or mutates, which loops an expression sits in, where a loop-invariant value can be
computed once, and fresh names that collide with nothing.

Everything is conservative: when the tree cannot show that a name stays the same (it is
rebound, mutated through a method or an item, or handed to a call that might mutate it),
the answer is "it may change", and the rule refuses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

Scope = ast.FunctionDef | ast.AsyncFunctionDef

LIST_MUTATORS = frozenset(
    {"append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse"}
)
MUTATORS = LIST_MUTATORS | frozenset(
    {
        "add",
        "discard",
        "update",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
        "popitem",
        "setdefault",
        "appendleft",
        "popleft",
        "extendleft",
        "rotate",
        "__setitem__",
        "__delitem__",
    }
)
# Builtins that read their arguments and never change them (nor call back into user code
# that could, for the plain containers the rules care about).
READ_ONLY_CALLS = frozenset(
    {
        "len",
        "set",
        "frozenset",
        "list",
        "tuple",
        "sorted",
        "sum",
        "min",
        "max",
        "any",
        "all",
        "enumerate",
        "zip",
        "reversed",
        "iter",
        "str",
        "repr",
        "bool",
        "dict",
        "range",
        "isinstance",
        "print",
        "abs",
        "int",
        "float",
        "round",
        "hash",
        "id",
        "type",
    }
)
# Calls that are worth computing once when their arguments do not change (len is cheap).
COSTLY_PURE_CALLS = frozenset(
    {"sorted", "set", "frozenset", "list", "tuple", "sum", "min", "max", "any", "all", "dict"}
)
# str methods that return a new object and change nothing.
PURE_STR_METHODS = frozenset(
    {"lower", "upper", "casefold", "strip", "lstrip", "rstrip", "title", "split", "replace"}
)
# methods of the builtin containers and str that only read their object
READ_METHODS = PURE_STR_METHODS | frozenset(
    {
        "count",
        "index",
        "get",
        "keys",
        "values",
        "items",
        "copy",
        "startswith",
        "endswith",
        "find",
        "rfind",
        "join",
        "format",
        "isdigit",
        "isalpha",
        "isspace",
        "issubset",
        "issuperset",
        "isdisjoint",
        "union",
        "intersection",
        "difference",
    }
)


def root_name(node: ast.AST) -> str | None:
    """``a`` for ``a``, ``a.b.c`` and ``a[i].b``; None for anything else."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a name (no calls, no items)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` in the same function scope: nested functions, lambdas
    and classes are other scopes and are not entered (their defining node is yielded)."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        yield child
        if not isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
        ):
            stack.extend(ast.iter_child_nodes(child))


def names_read(node: ast.AST) -> set[str]:
    return {
        n.id
        for n in [node, *walk_scope(node)]
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def bound_names(node: ast.AST) -> set[str]:
    """Names that ``node`` (re)binds or deletes, in its own scope (nested definitions
    count by their name; comprehension variables count too: conservative)."""
    out: set[str] = set()
    for n in [node, *walk_scope(node)]:
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
            out.add(n.id)
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n is not node:
            out.add(n.name)
        elif isinstance(n, ast.Global | ast.Nonlocal):
            out.update(n.names)
        elif isinstance(n, ast.Import | ast.ImportFrom):
            out.update((a.asname or a.name).split(".")[0] for a in n.names)
    return out


def mutated_names(node: ast.AST, trusted: str | None = None) -> set[str]:
    """Names whose object ``node`` may change in place: a mutating method, an item or
    attribute stored or deleted, an augmented assignment, or the name handed to a call
    that is not known to only read it (or stored somewhere: an alias). Calls of
    ``trusted`` (a function whose own body is checked) count as reads."""
    out: set[str] = set()
    for n in [node, *walk_scope(node)]:
        if isinstance(n, ast.Call):
            func = n.func
            if isinstance(func, ast.Attribute):
                # a method that is not known to only read may change its object (and
                # whatever holds it: `self.items.append(x)` changes `self`)
                owner = root_name(func.value)
                if owner is not None and (
                    func.attr in MUTATORS
                    or (func.attr not in READ_METHODS and not isinstance(func.value, ast.Name))
                    or (func.attr not in READ_METHODS and owner == "self")
                ):
                    out.add(owner)
            callee = func.id if isinstance(func, ast.Name) else None
            if callee not in READ_ONLY_CALLS and (callee is None or callee != trusted):
                for arg in [*n.args, *(k.value for k in n.keywords)]:
                    inner = arg.value if isinstance(arg, ast.Starred) else arg
                    owner = root_name(inner)
                    if owner is not None:
                        out.add(owner)
        elif isinstance(n, ast.Subscript | ast.Attribute) and isinstance(
            n.ctx, ast.Store | ast.Del
        ):
            base = n.value
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name):
                out.add(base.id)
        elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            out.add(n.target.id)
        elif isinstance(n, ast.Assign | ast.AnnAssign | ast.NamedExpr) and isinstance(
            n.value, ast.Name
        ):
            out.add(n.value.id)  # an alias: changes through it are invisible here
        elif isinstance(n, ast.Yield | ast.YieldFrom | ast.Await):
            out.add("*")  # the caller runs in between: anything may change
    return out


def changed_names(node: ast.AST) -> set[str]:
    return bound_names(node) | mutated_names(node)


def parameters(fn: Scope) -> list[str]:
    a = fn.args
    names = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    if a.vararg:
        names.append(a.vararg.arg)
    if a.kwarg:
        names.append(a.kwarg.arg)
    return names


def all_names(node: ast.AST) -> set[str]:
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(n.name)
    return out


@dataclass
class Tree:
    """A function and the parent of every node in it."""

    fn: Scope
    parents: dict[ast.AST, ast.AST]

    @classmethod
    def of(cls, fn: Scope) -> Tree:
        parents: dict[ast.AST, ast.AST] = {}
        for parent in ast.walk(fn):
            for child in ast.iter_child_nodes(parent):
                parents[child] = parent
        return cls(fn, parents)

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        while node in self.parents:
            node = self.parents[node]
            yield node

    def method_statement(self, use: ast.AST, method: str, nargs: int) -> ast.Call | None:
        """The call ``use.method(...)`` with ``nargs`` plain positional arguments, when it
        is a statement of its own (its value unused); else None."""
        parent = self.parents.get(use)
        found = self.parents.get(parent) if parent is not None else None
        if (
            isinstance(parent, ast.Attribute)
            and parent.attr == method
            and isinstance(found, ast.Call)
            and found.func is parent
            and len(found.args) == nargs
            and not any(isinstance(a, ast.Starred) for a in found.args)
            and isinstance(self.parents.get(found), ast.Expr)
        ):
            return found
        return None

    def statement(self, node: ast.AST) -> ast.stmt:
        """The innermost statement holding ``node``."""
        if isinstance(node, ast.stmt):
            return node
        for a in self.ancestors(node):
            if isinstance(a, ast.stmt):
                return a
        raise ValueError("node outside any statement")

    def in_own_scope(self, node: ast.AST) -> bool:
        """``node`` belongs to the function itself, not to a nested def or lambda."""
        for a in self.ancestors(node):
            if a is self.fn:
                return True
            if isinstance(a, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                return False
        return False

    def body_of(self, stmt: ast.stmt) -> tuple[list[ast.stmt], int]:
        """The statement list holding ``stmt`` and its index there."""
        parent = self.parents[stmt]
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(parent, field, None)
            if isinstance(block, list):
                for i, s in enumerate(block):
                    if s is stmt:
                        return block, i
        if isinstance(parent, ast.match_case | ast.ExceptHandler):
            return parent.body, parent.body.index(stmt)
        raise ValueError("statement not in a block")

    # -- edits (a rule's apply) ------------------------------------------------------

    def replace(self, old: ast.AST, new: ast.AST) -> None:
        """Put ``new`` where ``old`` stands in its parent."""
        parent = self.parents[old]
        for field_name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field_name, new)
                break
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        break
        self.parents[new] = parent

    def insert_before(self, stmt: ast.stmt, new: list[ast.stmt]) -> None:
        block, i = self.body_of(stmt)
        block[i:i] = new

    def insert_after(self, stmt: ast.stmt, new: list[ast.stmt]) -> None:
        block, i = self.body_of(stmt)
        block[i + 1 : i + 1] = new

    def repeated_by(self, node: ast.AST) -> list[ast.stmt | ast.comprehension]:
        """The loops that evaluate ``node`` more than once, innermost first: a ``for``
        whose body holds it (not its iterable), a ``while`` (its test too), a
        comprehension whose element or later clauses hold it."""
        loops: list[ast.stmt | ast.comprehension] = []
        child = node
        for a in self.ancestors(node):
            if isinstance(a, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                break
            if (
                isinstance(a, ast.For | ast.AsyncFor)
                and child is not a.iter
                and child is not a.target
            ) or isinstance(a, ast.While):
                loops.append(a)
            elif isinstance(a, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
                first_iter = a.generators[0].iter
                if child is not first_iter:
                    loops.append(a.generators[0])
            child = a
        return loops

    def hoist_point(self, node: ast.AST, depends_on: set[str]) -> ast.stmt | None:
        """The statement before which a value computed from ``depends_on`` (as ``node``
        computes it) can be computed once: the outermost enclosing loop statement in which
        none of those names change, or the statement holding a comprehension that repeats
        ``node``. None when ``node`` is not repeated or no such point exists."""
        loops = self.repeated_by(node)
        if not loops:
            return None
        point: ast.stmt | None = None
        for loop in loops:
            if isinstance(loop, ast.comprehension):
                # the comprehension's own variables are the only names it rebinds
                targets = bound_names(loop.target)
                if depends_on & targets:
                    return point
                if point is None:
                    point = self.statement(loop)
                continue
            if depends_on & changed_names(loop) or "*" in mutated_names(loop):
                break
            point = loop
        if point is None:
            return None
        if not all(self.bound_before(point, name) for name in depends_on):
            return None
        return point

    def bound_before(self, stmt: ast.stmt, name: str) -> bool:
        """``name`` has a value when ``stmt`` starts: a parameter, a global the function
        never binds, or bound by a statement before ``stmt`` in an enclosing block."""
        if name in parameters(self.fn):
            return True
        if name not in bound_names(self.fn):
            return True  # a global or builtin
        node: ast.AST = stmt
        while node is not self.fn:
            if isinstance(node, ast.stmt):
                block, i = self.body_of(node)
                if any(name in bound_names(s) for s in block[:i]):
                    return True
            node = self.parents[node]
        return False


def fresh_name(taken: set[str], base: str) -> str:
    """``base`` made unique against ``taken`` (and added to it)."""
    name = base
    n = 2
    while name in taken:
        name = f"{base}{n}"
        n += 1
    taken.add(name)
    return name


def is_name(node: ast.AST | None, name: str | None = None) -> bool:
    return isinstance(node, ast.Name) and (name is None or node.id == name)


def method_call(node: ast.AST, method: str | None = None) -> tuple[str, ast.Call] | None:
    """``NAME.method(...)`` -> (NAME, call)."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and (method is None or node.func.attr == method)
    ):
        return node.func.value.id, node
    return None


def pure_call(node: ast.Call) -> bool:
    """A call of a read-only builtin or a pure str method."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in READ_ONLY_CALLS - {"print", "iter"}
    return isinstance(func, ast.Attribute) and func.attr in PURE_STR_METHODS


def is_pure(node: ast.AST, allow_calls: bool = True) -> bool:
    """An expression without side effects: names, constants, attributes, items,
    operators, comparisons, containers, comprehensions of those, and calls of read-only
    builtins and pure str methods."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call) and not (allow_calls and pure_call(n)):
            return False
        if isinstance(
            n, ast.NamedExpr | ast.Yield | ast.YieldFrom | ast.Await | ast.Lambda | ast.Starred
        ):
            return False
    return True

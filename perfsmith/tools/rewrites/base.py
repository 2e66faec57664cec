"""The rule interface of the rewrite catalogue, and what a rule's rewrite adds around the
function: imports, small helper functions, fresh names.

A rule finds sites (``find``: pure analysis, also used to guide the model's proposals)
and rewrites them in place on a copy of the function's tree (``apply``). Every rewrite
is a candidate, verified like any other: a rule's preconditions keep it from proposing
code that it can see would behave differently; the verifiers decide the rest.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from perfsmith.tools.rewrites.analysis import Tree, all_names, bound_names, fresh_name

# Helper functions a rewrite may need, emitted once beside the function (module level).
HELPERS: dict[str, str] = {
    "_as_lookup": '''\
def _as_lookup(items):
    """A set of a list's or tuple's items (fast `in`), else the object itself."""
    if type(items) in (list, tuple):
        try:
            return set(items)
        except TypeError:  # unhashable items: keep scanning
            return items
    return items
''',
    "_count_lookup": '''\
def _count_lookup(items):
    """`items.count`, answered from one pass over a list or tuple."""
    if type(items) in (list, tuple):
        try:
            counts = collections.Counter(items)
        except TypeError:
            return items.count
        return counts.__getitem__
    return items.count
''',
    "_index_lookup": '''\
def _index_lookup(items):
    """`items.index`, answered from one pass over a list or tuple (a missing item raises
    as `index` does)."""
    if type(items) not in (list, tuple):
        return items.index
    first = {}
    try:
        for i, item in enumerate(items):
            first.setdefault(item, i)
    except TypeError:
        return items.index

    def index(item):
        try:
            return first[item]
        except (KeyError, TypeError):
            return items.index(item)

    return index
''',
    "_prefix_sums": '''\
def _prefix_sums(items):
    """sums[i] is the sum of the first i items."""
    sums = [0]
    for item in items:
        sums.append(sums[-1] + item)
    return sums
''',
    "_slice_sum": '''\
def _slice_sum(sums, start, stop):
    """sum(items[start:stop]) from the prefix sums of items."""
    span = range(len(sums) - 1)[start:stop]
    return sums[span.stop] - sums[span.start] if len(span) else 0
''',
    "_sorted_first": '''\
def _sorted_first(items, key=None, reverse=False):
    """sorted(items, key=key, reverse=reverse)[0] without sorting (min/max keep the first
    of equal items, as the stable sort does)."""
    try:
        return (max if reverse else min)(items, key=key)
    except ValueError:  # empty: fail the way indexing the sorted list fails
        return sorted(items, key=key, reverse=reverse)[0]
''',
    "_sorted_last": '''\
def _sorted_last(items, reverse=False):
    """sorted(items, reverse=reverse)[-1] without sorting."""
    try:
        return (min if reverse else max)(items)
    except ValueError:  # empty: fail the way indexing the sorted list fails
        return sorted(items, reverse=reverse)[-1]
''',
    "_UNSET": "_UNSET = object()\n",
}
HELPER_IMPORTS = {"_count_lookup": {"collections"}}


@dataclass
class ModuleInfo:
    """What a rule needs to know about the module around the function."""

    imports: dict[str, str]  # local name -> module ("np" -> "numpy")
    names: set[str]  # every name the module defines or imports at top level

    @classmethod
    def of(cls, tree: ast.Module) -> ModuleInfo:
        imports: dict[str, str] = {}
        names: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    local = a.asname or a.name.split(".")[0]
                    imports[local] = a.name if a.asname else a.name.split(".")[0]
                    names.add(local)
            elif isinstance(node, ast.ImportFrom):
                names.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
        return cls(imports, names)

    def builtin_free(self, tree: Tree, name: str) -> bool:
        """The builtin ``name`` means the builtin here: neither the function nor the
        module rebinds it."""
        return name not in bound_names(tree.fn) and name not in self.names

    def module_free(self, module: str) -> bool:
        """``import module`` may be added: the name is free or already that module."""
        return module not in self.names or self.imports.get(module) == module


@dataclass
class Site:
    """One place a rule applies: the line (in the module), what it found, and what the
    rewrite needs."""

    rule: str
    line: int
    note: str
    node: ast.AST
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "line": self.line, "note": self.note}


class Emit:
    """What a rewrite adds around the function."""

    def __init__(self, fn: ast.AST, module: ModuleInfo) -> None:
        self.module = module
        self.taken = all_names(fn) | module.names | set(HELPERS)
        self.imports: set[str] = set()
        self.helpers: list[str] = []
        self.prelude: list[ast.stmt] = []  # module-level statements (e.g. compiled regexes)

    def name(self, base: str) -> str:
        return fresh_name(self.taken, base)

    def need_import(self, module: str) -> str:
        self.imports.add(module)
        return module

    def helper(self, name: str) -> str:
        if name not in self.helpers:
            self.helpers.append(name)
            self.imports.update(HELPER_IMPORTS.get(name, set()))
        return name

    def render(self, fn: ast.AST) -> str:
        """The candidate's code: imports, helpers, module-level prelude, the function."""
        parts = [f"import {m}\n" for m in sorted(self.imports) if m not in self.module.imports]
        if parts:
            parts.append("\n")
        for name in self.helpers:
            parts.append(HELPERS[name] + "\n\n")
        for stmt in self.prelude:
            parts.append(ast.unparse(stmt) + "\n")
        if self.prelude:
            parts.append("\n\n")
        parts.append(ast.unparse(ast.fix_missing_locations(fn)) + "\n")
        return "".join(parts)


class Rule(Protocol):
    """One pattern of the catalogue."""

    id: str
    title: str

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]: ...

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        """Rewrite ``sites`` in ``tree`` (in place); False when nothing could be done."""
        ...


class NodeRule:
    """A rule whose sites are found node by node (``match`` yields the sites at one node
    of the function) and, unless the rule overrides ``apply``, rewritten one by one
    (``rewrite``). ``ready`` says whether the rule can apply in this function at all
    (say, the module its rewrite imports is not shadowed)."""

    id: str
    title: str

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        return True

    def match(self, node: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        raise NotImplementedError

    def site(self, node: ast.AST, note: str, *, line: int | None = None, **data: Any) -> Site:
        """A site of this rule at ``node`` (on its line unless ``line``), saying ``note``."""
        return Site(self.id, line or int(getattr(node, "lineno", 0)), note, node, data)

    def find(self, tree: Tree, module: ModuleInfo) -> list[Site]:
        if not self.ready(tree, module):
            return []
        return [site for node in ast.walk(tree.fn) for site in self.match(node, tree, module)]

    def rewrite(self, tree: Tree, site: Site, emit: Emit) -> None:
        raise NotImplementedError

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        for site in sites:
            self.rewrite(tree, site, emit)
        return bool(sites)

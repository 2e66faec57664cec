"""Rules for regular expressions compiled (or looked up in re's cache) on every call."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from perfsmith.tools.rewrites.analysis import Tree, bound_names
from perfsmith.tools.rewrites.base import Emit, ModuleInfo, NodeRule, Site
from perfsmith.tools.rewrites.nodes import assign, attr, call, name_load

# re function -> how many positional arguments (pattern included) it takes before flags
_FUNCTIONS = {
    "compile": 1,
    "match": 2,
    "search": 2,
    "fullmatch": 2,
    "findall": 2,
    "finditer": 2,
    "split": 3,
    "sub": 4,
    "subn": 4,
}


def _flags(node: ast.expr, re_name: str) -> bool:
    """A flags expression made of re's constants (re.I | re.M) or an int."""
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and n.id != re_name:
            return False
        if isinstance(n, ast.Call):
            return False
    return True


def _re_name(module: ModuleInfo) -> str | None:
    """The name the module imports ``re`` as, if it does."""
    return next((name for name, mod in module.imports.items() if mod == "re"), None)


class PrecompileRegex(NodeRule):
    """`re.search(r"...", s)` with a literal pattern: compile it once at import."""

    id = "precompile-regex"
    title = "`re.match(LITERAL, s)` or `re.compile(LITERAL)` on every call: compile once"

    def ready(self, tree: Tree, module: ModuleInfo) -> bool:
        re_name = _re_name(module)
        return re_name is not None and re_name not in bound_names(tree.fn)

    def match(self, node: ast.AST, tree: Tree, module: ModuleInfo) -> Iterator[Site]:
        re_name = _re_name(module)
        if re_name is None or not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == re_name
            and node.func.attr in _FUNCTIONS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str | bytes)
            and len(node.args) <= _FUNCTIONS[node.func.attr]
            and not any(isinstance(a, ast.Starred) for a in node.args)
            and all(k.arg is not None for k in node.keywords)
        ):
            return
        flags = [k for k in node.keywords if k.arg == "flags"]
        if flags and not _flags(flags[0].value, re_name):
            return
        try:  # an invalid pattern must keep failing where it failed: at the call
            re.compile(node.args[0].value)
        except (re.error, TypeError):
            return
        note = (
            f"`{re_name}.{node.func.attr}` with the pattern {node.args[0].value!r:.40} looks "
            "it up on every call: compile it once"
        )
        yield self.site(node, note, re=re_name, flags=flags[0].value if flags else None)

    def apply(self, tree: Tree, sites: list[Site], emit: Emit) -> bool:
        compiled: dict[str, str] = {}
        for site in sites:
            node = site.node
            assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            pattern, flags = node.args[0], site.data["flags"]
            key = ast.dump(pattern) + (ast.dump(flags) if flags is not None else "")
            if key not in compiled:
                var = emit.name(f"_{tree.fn.name.upper()}_RE")
                args = [pattern] + ([flags] if flags is not None else [])
                emit.prelude.append(assign(var, call(attr(site.data["re"], "compile"), *args)))
                compiled[key] = var
            if node.func.attr == "compile":  # the compiled pattern itself
                tree.replace(node, name_load(compiled[key]))
                continue
            node.func = attr(name_load(compiled[key]), node.func.attr)
            node.args = node.args[1:]
            node.keywords = [k for k in node.keywords if k.arg != "flags"]
        return bool(sites)

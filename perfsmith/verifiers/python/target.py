"""`FILE::FUNC` references to functions: parsed and checked (file, syntax, name) before
anything runs, with errors that say what to fix."""

from __future__ import annotations

import ast
import hashlib
import textwrap
from dataclasses import dataclass
from pathlib import Path

from perfsmith.errors import PerfsmithError


class TargetError(PerfsmithError):
    """A FILE::FUNC reference that cannot be used (a usage error)."""


@dataclass(frozen=True)
class Target:
    """A function of a module (``FUNC``) or a method of one of its classes
    (``Class.method``: instance, class and static methods)."""

    path: Path
    function: str
    source: str

    @property
    def module_file(self) -> str:
        return self.path.name

    @property
    def owner(self) -> str | None:
        """The class a method belongs to (None for a function)."""
        return self.function.rpartition(".")[0] or None

    @property
    def name(self) -> str:
        """The bare name: the function's, or the method's without its class."""
        return self.function.rpartition(".")[2]

    @property
    def kind(self) -> str:
        """function, method, classmethod or staticmethod."""
        return target_kind(self.source, self.function)

    def __str__(self) -> str:
        return f"{self.path}::{self.function}"


def find_definition(
    tree: ast.Module, function: str
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The top-level function ``function``, or the method ``Class.method`` defined in a
    top-level class."""
    owner, _, name = function.rpartition(".")
    body: list[ast.stmt] = tree.body
    if owner:
        cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == owner), None)
        if cls is None:
            return None
        body = cls.body
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
    return None


def target_kind(source: str, function: str) -> str:
    if "." not in function:
        return "function"
    node = find_definition(ast.parse(source), function)
    decorators = {ast.unparse(d) for d in node.decorator_list} if node else set()
    for kind in ("classmethod", "staticmethod"):
        if kind in decorators:
            return kind
    return "method"


def defined_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def parse_target(spec: str, *, what: str = "function") -> Target:
    """Read `FILE::FUNC` or `FILE::Class.method`; the file must exist and parse, and
    define FUNC at top level (or the class at top level with the method in its body)."""
    path_text, sep, function = spec.rpartition("::")
    parts = function.split(".")
    if not sep or not path_text or not all(p.isidentifier() for p in parts) or len(parts) > 2:
        raise TargetError(
            f"{spec!r} is not FILE::FUNCTION or FILE::Class.method "
            "(e.g. slow.py::dedupe, shop.py::Cart.total)"
        )
    path = Path(path_text)
    if not path.is_file():
        raise TargetError(f"{what} file {path} does not exist")
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetError(f"cannot read {path}: {exc}") from exc
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise TargetError(f"{path} has a syntax error on line {exc.lineno}: {exc.msg}") from exc
    names = defined_names(tree)
    if len(parts) == 2:
        owner, method = parts
        classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
        cls = next((c for c in classes if c.name == owner), None)
        if cls is None:
            listed = ", ".join(c.name for c in classes) or "none"
            raise TargetError(f"{path} defines no class {owner!r} at top level (classes: {listed})")
        if find_definition(tree, function) is None:
            methods = [
                n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
            raise TargetError(
                f"class {owner} in {path} defines no method {method!r} "
                f"(it defines: {', '.join(methods) or 'none'})"
            )
        return Target(path=path, function=function, source=source)
    if function not in names:
        listed = ", ".join(n for n in names if not n.startswith("_")) or "nothing"
        raise TargetError(f"{path} defines no {what} {function!r} (it defines: {listed})")
    return Target(path=path, function=function, source=source)


def source_hash(code: str) -> str:
    """Equal for sources that differ only in comments, blank lines and formatting."""
    try:
        normalized = ast.dump(ast.parse(code))
    except SyntaxError:
        normalized = code
    return hashlib.sha256(normalized.encode()).hexdigest()


def function_source(module_source: str, function: str) -> str:
    """The source of ``function`` (or of method ``Class.method``, dedented), with its
    decorators."""
    tree = ast.parse(module_source)
    node = find_definition(tree, function)
    if node is not None:
        segment = ast.get_source_segment(module_source, node, padded=True)
        if segment is not None:
            decorators = "".join(f"@{ast.unparse(d)}\n" for d in node.decorator_list)
            return decorators + textwrap.dedent(segment) + "\n"
    raise TargetError(f"no function {function!r}")

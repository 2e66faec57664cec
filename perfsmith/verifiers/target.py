"""`FILE::FUNC` references to functions: parsed and checked (file, syntax, name) before
anything runs, with errors that say what to fix."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from perfsmith.errors import PerfsmithError


class TargetError(PerfsmithError):
    """A FILE::FUNC reference that cannot be used (a usage error)."""


@dataclass(frozen=True)
class Target:
    path: Path
    function: str
    source: str

    @property
    def module_file(self) -> str:
        return self.path.name

    def __str__(self) -> str:
        return f"{self.path}::{self.function}"


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
    """Read `FILE::FUNC`; the file must exist and parse, and define FUNC at top level."""
    path_text, sep, function = spec.rpartition("::")
    if not sep or not path_text or not function.isidentifier():
        raise TargetError(f"{spec!r} is not FILE::FUNCTION (e.g. slow.py::dedupe)")
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
    if function not in names:
        listed = ", ".join(n for n in names if not n.startswith("_")) or "nothing"
        raise TargetError(f"{path} defines no {what} {function!r} (it defines: {listed})")
    return Target(path=path, function=function, source=source)

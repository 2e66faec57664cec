"""Load tools from a module name or a Python file, so runs started from the CLI can be
resumed by another process (the run stores the specs, not the functions)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from perfsmith.errors import ToolError
from perfsmith.tools.registry import Tool


def _import(spec: str) -> ModuleType:
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise ToolError(f"tool file {spec} does not exist")
        name = f"perfsmith_user_tools_{abs(hash(str(path)))}"
        if name in sys.modules:
            return sys.modules[name]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ToolError(f"cannot import tools from {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ToolError(
                f"importing tools from {spec} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return module
    try:
        return importlib.import_module(spec)
    except ImportError as exc:
        raise ToolError(f"cannot import tool module {spec!r}: {exc}") from exc


def load_tools(specs: list[str]) -> list[Tool]:
    """Every Tool in each module (its `TOOLS` list if it has one)."""
    tools: list[Tool] = []
    for spec in specs:
        module = _import(spec)
        declared = getattr(module, "TOOLS", None)
        found = (
            list(declared)
            if declared is not None
            else [v for v in vars(module).values() if isinstance(v, Tool)]
        )
        if not found or not all(isinstance(t, Tool) for t in found):
            raise ToolError(f"{spec} defines no tools (functions decorated with @tool)")
        tools.extend(found)
    return tools

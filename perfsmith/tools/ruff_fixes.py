"""ruff's fixes as a candidate source: ruff already rewrites many slow patterns (perflint's
PERF, refurb's FURB, comprehensions C4, SIM, UP), some of them only with its unsafe
fixes. Run it on the target function (with the module's imports around it) and offer
the fixed function as one candidate, verified like any other.

ruff reads text and runs nothing, so it runs here, not in the sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from perfsmith.errors import PerfsmithError
from perfsmith.verifiers.python.target import function_source, source_hash

SELECT = "PERF,FURB,C4,SIM,UP"
_TIMEOUT_S = 60.0


class RuffError(PerfsmithError):
    """ruff could not be run."""


@dataclass(frozen=True)
class RuffFix:
    """The function as ruff fixed it, and the rules whose fixes changed it."""

    code: str
    rules: tuple[str, ...]

    @property
    def origin(self) -> str:
        return f"ruff:{','.join(self.rules)}"[:64]


def _ruff() -> str:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError as exc:  # pragma: no cover - ruff is a dependency
        raise RuffError("ruff is not installed: pip install ruff") from exc
    return str(find_ruff_bin())


def _excerpt(module_source: str, function: str) -> tuple[str, list[str]]:
    """The module's top-level imports and the function alone (ruff fixes only it)."""
    tree = ast.parse(module_source)
    imports = [
        ast.get_source_segment(module_source, node) or ""
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    head = "\n".join(i for i in imports if i)
    return (head + "\n\n\n" if head else "") + function_source(module_source, function), imports


async def _run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        _ruff(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), _TIMEOUT_S)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise RuffError(f"ruff ran past {_TIMEOUT_S:.0f} s") from exc
    if proc.returncode not in (0, 1):
        raise RuffError(f"ruff failed: {err.decode(errors='replace').strip()[:500]}")
    return out.decode(errors="replace")


async def ruff_fix(module_source: str, function: str, select: str = SELECT) -> RuffFix | None:
    """The function with ruff's fixes for ``select`` applied (unsafe ones included), or
    None when ruff changes nothing in it."""
    excerpt, imports = _excerpt(module_source, function)
    common = ["--isolated", "--no-cache", "--preview", "--unsafe-fixes", "--select", select]
    with tempfile.TemporaryDirectory(prefix="perfsmith-ruff-") as folder:
        path = Path(folder) / "target.py"
        path.write_text(excerpt, encoding="utf-8")
        report = await _run("check", *common, "--output-format", "json", "--exit-zero", str(path))
        fixable = sorted({d["code"] for d in json.loads(report or "[]") if d.get("fix")})
        if not fixable:
            return None
        await _run("check", *common, "--fix", "--exit-zero", "--quiet", str(path))
        fixed = path.read_text(encoding="utf-8")
    try:
        # the excerpt holds the function (or the method, dedented) at top level
        new_function = function_source(fixed, function.rpartition(".")[2])
    except (SyntaxError, PerfsmithError):
        return None
    if source_hash(new_function) == source_hash(function_source(module_source, function)):
        return None
    added = [
        ast.get_source_segment(fixed, node) or ""
        for node in ast.parse(fixed).body
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    new_imports = [i for i in added if i and i not in imports]
    code = "".join(f"{i}\n" for i in new_imports) + ("\n\n" if new_imports else "") + new_function
    return RuffFix(code=code, rules=tuple(fixable))

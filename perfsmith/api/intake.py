"""From what a user sent to what perfsmith runs: a chat message is read as an optimize, a
kernel or a plan request, and every path is checked to lie inside the server's workspace."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from perfsmith.api.schemas import ChatRunCreate, KernelRunCreate, OptimizeRunCreate, PlanRunCreate
from perfsmith.errors import PerfsmithError

TypedRequest = OptimizeRunCreate | KernelRunCreate | PlanRunCreate

# Every pattern here runs in time linear in the message (a megabyte of adversarial text
# included): no pattern can restart a scan of unbounded length at each position.
_FUNC = re.compile(r"[A-Za-z_]\w*")
_FENCE_OPEN = re.compile(r"```(?:python|py)?[ \t]*\n")
_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(?P<name>[A-Za-z_]\w*)[ \t]*\(", re.MULTILINE)
_ROLE = re.compile(r"\b(?P<role>inputs?|generator|workload)\b\W{0,3}$", re.IGNORECASE)
_ROLE_WINDOW = 16  # "generator" and up to three separators before a target
MAX_PATH = 4096


@dataclass(frozen=True)
class _Named:
    """A FILE::FUNC in a message, with where it starts."""

    start: int
    path: str
    func: str


def _path_char(c: str) -> bool:
    return c.isalnum() or c in "_./-"


def find_targets(message: str) -> list[_Named]:
    """Every `FILE.py::FUNC` in the message: from each `::`, the path is read backwards
    (path characters, at most MAX_PATH) and the function forwards."""
    found = []
    at = message.find("::")
    while at != -1:
        begin = at
        while begin > 0 and at - begin < MAX_PATH and _path_char(message[begin - 1]):
            begin -= 1
        path = message[begin:at]
        func = _FUNC.match(message, at + 2)
        if path.endswith(".py") and len(path) > 3 and func is not None:
            found.append(_Named(begin, path, func.group()))
        at = message.find("::", at + 2)
    return found


def find_fenced_code(message: str) -> str | None:
    """The code of the first ```python block that is closed."""
    opening = _FENCE_OPEN.search(message)
    if opening is None:
        return None
    end = message.find("```", opening.end())
    return message[opening.end() : end] if end != -1 else None


_BACKENDS = {"cuda": "cuda", "triton": "triton", "c++": "cpp", "cpp": "cpp", "openmp": "cpp"}

EXAMPLES = (
    "make examples/dupes/dupes.py::find_duplicates faster",
    "a pasted function in a ```python block",
    "write a faster softmax kernel in CUDA",
)


class RequestError(PerfsmithError):
    """A request that names something perfsmith cannot use; `field` says which part."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Workspace:
    """Where API requests may read files: `root`, and the kernel suite's problems."""

    root: Path
    kernel_suite: Path | None = None

    def file(self, rel: str, *, field: str) -> Path:
        """`rel` resolved inside the workspace; it must exist there."""
        candidate = Path(rel)
        if candidate.is_absolute() or ".." in candidate.parts:
            raise RequestError(
                f"{rel!r} must be a path relative to the server's workspace, without '..'",
                field=field,
            )
        path = (self.root / candidate).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise RequestError(f"{rel!r} leads outside the server's workspace", field=field)
        if not path.is_file():
            raise RequestError(f"no file {rel!r} in the server's workspace", field=field)
        return path

    def target(self, spec: str, *, field: str) -> str:
        """`FILE::FUNC` with FILE made absolute inside the workspace."""
        path, _, func = spec.rpartition("::")
        return f"{self.file(path, field=field)}::{func}"

    def problems(self) -> list[str]:
        if self.kernel_suite is None or not self.kernel_suite.is_dir():
            return []
        return sorted(p.stem for p in self.kernel_suite.glob("*.py") if not p.name.startswith("_"))

    def problem(self, name: str, *, field: str) -> Path:
        """A kernel problem by its name in the suite, or a `.py` file in the workspace."""
        if name.endswith(".py"):
            return self.file(name, field=field)
        if name in self.problems():
            assert self.kernel_suite is not None
            return self.kernel_suite / f"{name}.py"
        known = ", ".join(self.problems()) or "none: the server has no kernel suite"
        raise RequestError(f"no kernel problem {name!r}; known problems: {known}", field=field)


def interpret(message: str, workspace: Workspace, *, has_tools: bool) -> TypedRequest:
    """Read a chat message as a typed request (see EXAMPLES)."""
    targets = find_targets(message)
    if targets:
        roles: dict[str, str] = {}
        main: str | None = None
        for m in targets:
            role = _ROLE.search(message[max(0, m.start - _ROLE_WINDOW) : m.start])
            spec = f"{m.path}::{m.func}"
            if role is not None:
                key = "workload" if role["role"].lower() == "workload" else "inputs"
                roles.setdefault(key, spec)
            elif main is None:
                main = spec
        if main is None:
            raise RequestError(
                "the message names inputs or a workload but no FILE::FUNCTION to optimize",
                field="message",
            )
        return OptimizeRunCreate(
            target=main, inputs=roles.get("inputs"), workload=roles.get("workload")
        )
    fence = find_fenced_code(message)
    code = fence if fence is not None else (message if _DEF.search(message) else None)
    if code is not None:
        defined = _DEF.search(code)
        if defined is None:
            raise RequestError("the pasted code defines no function to optimize", field="message")
        return OptimizeRunCreate(source=code, function=defined["name"])
    lowered = message.lower()
    if "kernel" in lowered:
        for name in workspace.problems():
            if re.search(rf"\b{re.escape(name)}\b", lowered):
                backend = next((b for word, b in _BACKENDS.items() if word in lowered), "cpp")
                return KernelRunCreate(problem=name, backend=backend)
    if has_tools:
        return PlanRunCreate(request=message)
    raise RequestError(
        "cannot tell what to optimize; name a function (FILE::FUNCTION), paste one in a "
        "```python block, or name a kernel problem ("
        + (", ".join(workspace.problems()) or "the server has no kernel suite")
        + ")",
        field="message",
    )


def typed(
    body: ChatRunCreate | TypedRequest, workspace: Workspace, *, has_tools: bool
) -> TypedRequest:
    if isinstance(body, ChatRunCreate):
        return interpret(body.message, workspace, has_tools=has_tools)
    return body

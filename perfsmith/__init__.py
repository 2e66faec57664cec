"""perfsmith: agentic LLM orchestration that makes code faster, with proof."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perfsmith.api.client import Client
    from perfsmith.engine.drive import RunResult
    from perfsmith.service.library import kernel_optimize, optimize, optimize_repo, resume, run
    from perfsmith.tools.registry import tool
    from perfsmith.workflows.optimize import OptimizeResult

__version__ = "0.1.0"
__all__ = [
    "Client",
    "OptimizeResult",
    "RunResult",
    "__version__",
    "kernel_optimize",
    "optimize",
    "optimize_repo",
    "resume",
    "run",
    "tool",
]


# Where each public name lives: loaded on first use (the orchestrator pulls in LangGraph and
# the openai SDK, the tool registry pydantic) so that `perfsmith --help` and light commands
# start fast.
_HOMES = {
    "tool": "perfsmith.tools.registry",
    "run": "perfsmith.service.library",
    "resume": "perfsmith.service.library",
    "optimize": "perfsmith.service.library",
    "optimize_repo": "perfsmith.service.library",
    "kernel_optimize": "perfsmith.service.library",
    "RunResult": "perfsmith.engine.drive",
    "OptimizeResult": "perfsmith.workflows.optimize",
    "Client": "perfsmith.api.client",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'perfsmith' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)

"""perfsmith: agentic LLM orchestration that makes code faster, with proof."""

from __future__ import annotations

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


def __getattr__(name: str) -> Any:
    # Everything is loaded on first use (the orchestrator pulls in LangGraph and the openai
    # SDK, the tool registry pydantic) so that `perfsmith --help` and light commands start
    # fast.
    if name == "tool":
        from perfsmith.tools.registry import tool

        return tool
    if name in ("run", "resume", "optimize", "optimize_repo", "kernel_optimize"):
        from perfsmith.service import library

        return getattr(library, name)
    if name == "RunResult":
        from perfsmith.engine.drive import RunResult

        return RunResult
    if name == "OptimizeResult":
        from perfsmith.workflows.optimize import OptimizeResult

        return OptimizeResult
    if name == "Client":
        from perfsmith.api.client import Client

        return Client
    raise AttributeError(f"module 'perfsmith' has no attribute {name!r}")

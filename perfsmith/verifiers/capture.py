"""Inputs replayed from real calls: run a workload in the sandbox, record the arguments the
target function receives (copied at the moment of the call, before it can change them),
and serve them as an input generator."""

from __future__ import annotations

import base64
import pickle
import sys
from pathlib import Path
from typing import Any

from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.verifiers.correctness import GeneratedInputs
from perfsmith.verifiers.target import Target

# The recording hook, shared with optimize-repo's sitecustomize: ``_recorder(targets,
# limit)`` gives a sys.setprofile hook and the calls it records, by "FILE::NAME", for the
# functions ``targets`` maps (name -> file suffix); arguments are copied at the call.
RECORDER = r"""
def _recorder(targets, limit):
    import copy, pickle
    calls = {}

    def hook(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        want = targets.get(code.co_name)
        if want is None or not code.co_filename.endswith(want):
            return
        seen = calls.setdefault(want + "::" + code.co_name, [])
        if len(seen) >= limit:
            return
        try:
            args = tuple(frame.f_locals[n] for n in code.co_varnames[: code.co_argcount])
            args = copy.deepcopy(args)
            pickle.dumps(args)
        except Exception:
            return
        seen.append(args)

    return hook, calls
"""

_CAPTURE = (
    RECORDER
    + r"""
import importlib, pickle, sys
sys.path.insert(0, ".")
target_file, target_name, work_module, work_function, limit = sys.argv[1:6]
hook, calls = _recorder({target_name: target_file}, int(limit))
workload = getattr(importlib.import_module(work_module), work_function)
sys.setprofile(hook)
try:
    workload()
finally:
    sys.setprofile(None)
with open("calls.pkl", "wb") as f:
    pickle.dump(calls.get(target_file + "::" + target_name, []), f)
"""
)


class CaptureError(Exception):
    """The workload failed while its calls were recorded."""


async def capture_calls(
    sandbox: Sandbox,
    target: Target,
    workload: Target,
    *,
    limit: int = 64,
    limits: Limits | None = None,
) -> list[tuple[Any, ...]]:
    """The positional arguments of the first ``limit`` calls the workload makes to the
    target (calls whose arguments cannot be copied or pickled are skipped)."""
    result = await sandbox.run(
        [
            sys.executable,
            "-s",
            "_perfsmith_capture.py",
            target.module_file,
            target.function,
            workload.path.stem,
            workload.function,
            str(limit),
        ],
        files={
            target.module_file: target.source.encode(),
            workload.module_file: workload.source.encode(),
            "_perfsmith_capture.py": _CAPTURE.encode(),
        },
        collect=["calls.pkl"],
        limits=limits or Limits(wall_s=120, cpu_s=120, memory_mb=4096),
    )
    data = result.files.get("calls.pkl")
    if not result.ok or data is None:
        tail = result.stderr.strip().splitlines()[-6:] or [result.reason or str(result.status)]
        raise CaptureError(f"the workload {workload} failed: " + " | ".join(tail))
    # the user's own workload wrote it, in a sandbox of ours: plain data by construction
    calls: list[tuple[Any, ...]] = pickle.loads(data)
    return calls


def replay_generator(spec: str, calls: list[tuple[Any, ...]]) -> Target:
    """An input generator replaying ``calls``: every seed gets all of them, so each timing
    round does the work the real caller does (every round runs in a fresh process, so
    nothing cached in one round reaches the next)."""
    blob = base64.b64encode(pickle.dumps(calls)).decode()
    name = "perfsmith_replay_" + "".join(c if c.isalnum() else "_" for c in spec)[-60:]
    source = (
        f"# calls to {spec} recorded while its caller ran\n"
        "import base64, pickle\n"
        f"_CALLS = pickle.loads(base64.b64decode({blob!r}))\n\n\n"
        "def generate(seed):\n"
        "    return list(_CALLS)\n"
    )
    return Target(path=Path(f"{name}.py"), function="generate", source=source)


class ReplayedInputs(GeneratedInputs):
    """Recorded calls as an input source: every seed gets all of them, so correctness
    needs one seed."""

    def __init__(self, spec: str, calls: list[tuple[Any, ...]], where: str) -> None:
        super().__init__(replay_generator(spec, calls))
        self.calls = len(calls)
        self.description = f"{len(calls)} calls recorded while {where} ran"

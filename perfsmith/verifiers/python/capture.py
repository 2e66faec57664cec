"""Inputs replayed from real calls: run a workload in the sandbox, record the arguments the
target function receives (copied at the moment of the call, before it can change them),
and serve them as an input generator."""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import dataclass

from perfsmith.sandbox.base import Limits, Sandbox
from perfsmith.verifiers.python.target import Target

# The recording hook, shared with optimize-repo's sitecustomize: ``_recorder(targets,
# limit)`` gives a sys.setprofile hook and the calls it records, by "FILE::NAME", for the
# functions ``targets`` maps (name -> file suffix); arguments are copied at the call.
RECORDER = r"""
def _recorder(targets, limit):
    # targets: qualified name (FUNC or Class.method) -> file suffix. A call whose
    # arguments (a method's instance included) cannot be copied or pickled is not
    # recorded; the first such error per target is kept, under "!errors", and the name
    # of the module the target ran in (what its instances' pickles name) under "!modules".
    import copy, pickle
    calls = {}
    errors = calls.setdefault("!errors", {})
    modules = calls.setdefault("!modules", {})

    def hook(frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        want = targets.get(code.co_qualname)
        if want is None or not code.co_filename.endswith(want):
            return
        key = want + "::" + code.co_qualname
        modules.setdefault(key, frame.f_globals.get("__name__"))
        seen = calls.setdefault(key, [])
        if len(seen) >= limit:
            return
        try:
            args = tuple(frame.f_locals[n] for n in code.co_varnames[: code.co_argcount])
            args = copy.deepcopy(args)
            pickle.dumps(args)
        except Exception as exc:
            errors.setdefault(key, f"{type(exc).__name__}: {exc}")
            return
        seen.append(args)

    return hook, calls
"""

_CAPTURE = (
    RECORDER
    + r"""
import importlib, json, pickle, sys
sys.path.insert(0, ".")
target_file, target_name, work_module, work_function, limit = sys.argv[1:6]
hook, calls = _recorder({target_name: target_file}, int(limit))
workload = getattr(importlib.import_module(work_module), work_function)
sys.setprofile(hook)
try:
    workload()
finally:
    sys.setprofile(None)
key = target_file + "::" + target_name
recorded = calls.get(key, [])
with open("calls.pkl", "wb") as f:
    pickle.dump(recorded, f)
with open("calls.json", "w") as f:
    json.dump(
        {
            "count": len(recorded),
            "error": calls["!errors"].get(key),
            "module": calls["!modules"].get(key),
        },
        f,
    )
"""
)


class CaptureError(Exception):
    """The workload failed while its calls were recorded."""


@dataclass(frozen=True)
class RecordedCalls:
    """Calls recorded in a sandbox: pickled lists of argument tuples, kept as bytes (they
    may hold instances of the user's classes: only a sandbox ever unpickles them)."""

    blobs: tuple[bytes, ...]
    count: int
    error: str | None = None  # why some calls could not be recorded (the first failure)
    module: str | None = None  # the module the target ran in, as its caller imported it

    def inputs(self, *, drop_first: bool = False) -> bytes:
        """inputs.pkl for the harness: the recorded pickles as they are (bytes and names
        only are pickled here), unpickled in the sandbox once the module under test is
        in place of ``module``."""
        return pickle.dumps(("perfsmith-replay", self.module, list(self.blobs), drop_first))

    def why_none(self, target: str, workload: str = "the workload") -> str:
        """Why no call of ``target`` was recorded while ``workload`` ran, in words."""
        if self.error is not None:
            what = (
                "its instance or arguments"
                if "." in target.rpartition("::")[2]
                else "its arguments"
            )
            return (
                f"the calls to {target} could not be recorded: {what} cannot be copied and "
                f"pickled ({self.error}); give an input generator with --inputs"
            )
        function = target.rpartition("::")[2]
        return (
            f"{workload} never called {function} (with arguments that can be copied): "
            "nothing to replay"
        )


async def capture_calls(
    sandbox: Sandbox,
    target: Target,
    workload: Target,
    *,
    limit: int = 64,
    limits: Limits | None = None,
) -> RecordedCalls:
    """The arguments of the first ``limit`` calls the workload makes to the target (a
    method's instance first; calls whose arguments cannot be copied or pickled are
    skipped, and the first reason kept)."""
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
        collect=["calls.pkl", "calls.json"],
        limits=limits or Limits(wall_s=120, cpu_s=120, memory_mb=4096),
    )
    data, meta = result.files.get("calls.pkl"), result.files.get("calls.json")
    if not result.ok or data is None or meta is None:
        tail = result.stderr.strip().splitlines()[-6:] or [result.reason or str(result.status)]
        raise CaptureError(f"the workload {workload} failed: " + " | ".join(tail))
    info = json.loads(meta)
    return RecordedCalls((data,), int(info["count"]), info.get("error"), info.get("module"))


class ReplayedInputs:
    """Recorded calls as an input source: every seed gets all of them, so correctness
    needs one seed. Nothing runs to make them: the recorded pickles are the inputs."""

    def __init__(self, target: Target, calls: RecordedCalls, where: str) -> None:
        self.recorded = calls
        self.drop_first = target.kind == "classmethod"
        self.calls = calls.count
        self.description = f"{calls.count} calls recorded while {where} ran"

    async def make(self, sandbox: Sandbox, seeds: list[int], limits: Limits | None = None) -> bytes:
        return self.recorded.inputs(drop_first=self.drop_first)

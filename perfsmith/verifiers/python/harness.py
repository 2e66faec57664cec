"""Runs inside the sandbox (standard library only, next to _perfsmith_encode.py).

    python _perfsmith_harness.py generate GEN_FILE FUNC SEEDS  -> inputs.pkl
    python _perfsmith_harness.py call TARGET_FILE FUNC         -> outputs.json
    python _perfsmith_harness.py time TARGET_FILE FUNC LOOPS [dry] -> timing.json
    python _perfsmith_harness.py count TARGET_FILE FUNC LOOPS [dry] (under callgrind)
    python _perfsmith_harness.py infer TARGET_FILE FUNC SEED N -> inputs.pkl

`generate` calls the user's generator FUNC(seed) for each seed and pickles the argument
tuples: user code, but still sandboxed, and the pickle is only ever read inside other
sandboxes. `call` imports the target fresh, calls it on a deep copy of every input twice
(determinism), and writes each result or exception and the arguments as they were after
the call (mutation), in the safe wire format: the verifier never unpickles candidate data.
`infer` draws N argument tuples with hypothesis from the target's type hints (seeded, so
the same seed gives the same inputs). `time` calls the target LOOPS times over every
input (each call on its own deep copy, made before the clock starts) and reports the
elapsed time; `dry` does all but the calls (start-up, imports, copies).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import importlib.util
import json
import pickle
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from time import perf_counter as _clock  # bound before any target code is imported
from typing import Any

# `python -I` leaves the script's folder off sys.path; the wire format sits beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _perfsmith_encode as wire  # type: ignore[import-not-found]


def read_inputs() -> list[tuple[Any, ...]]:
    """The argument tuples of inputs.pkl. Recorded calls come as ("perfsmith-replay",
    MODULE, BLOBS, DROP_FIRST): their pickles name the module the workload imported the
    target's class from, which here is the module under test (loaded first), so a
    method's recorded instance is an instance of the code being verified."""
    data = pickle.loads(Path("inputs.pkl").read_bytes())
    if not (isinstance(data, tuple) and data[:1] == ("perfsmith-replay",)):
        return list(data)
    _, module_name, blobs, drop_first = data
    target = sys.modules.get("_perfsmith_target")
    if module_name and target is not None:
        parts = module_name.split(".")
        for i in range(1, len(parts)):  # packages above it, empty: only the module is used
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        sys.modules[module_name] = target
    calls = [tuple(c) for blob in blobs for c in pickle.loads(blob)]
    return [c[1:] for c in calls] if drop_first else calls


RECORD_FAILED = 4  # the exit status when the wire format cannot hold a value


def load(path: str, name: str) -> Callable[..., Any]:
    spec = importlib.util.spec_from_file_location("_perfsmith_target", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"harness: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["_perfsmith_target"] = module
    spec.loader.exec_module(module)
    fn: Any = module
    for part in name.split("."):  # FUNC, or Class.method (called with its instance first)
        fn = getattr(fn, part, None)
    if not callable(fn):
        raise SystemExit(f"harness: {path} has no callable {name!r}")
    return fn  # type: ignore[no-any-return]


def generate(path: str, name: str, seeds: list[int]) -> None:
    fn = load(path, name)
    inputs = []
    for seed in seeds:
        batch = fn(seed)
        if not isinstance(batch, (list, tuple)):
            raise SystemExit(
                f"harness: generator {name}({seed}) returned {type(batch).__name__}, "
                "not a list of argument tuples"
            )
        for args in batch:
            if not isinstance(args, tuple):
                raise SystemExit(
                    f"harness: generator {name}({seed}) gave {type(args).__name__} "
                    f"{str(args)[:60]!r}, not an argument tuple"
                )
            inputs.append(args)
    Path("inputs.pkl").write_bytes(pickle.dumps(inputs))
    print(len(inputs))


def infer(path: str, name: str, seed: int, count: int) -> None:
    import inspect
    import typing

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed
    from hypothesis import strategies as st

    fn = load(path, name)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise SystemExit(f"harness: cannot read the type hints of {name}: {exc}") from exc
    strategies = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name not in hints:
            if param.default is not param.empty:
                continue
            raise SystemExit(
                f"harness: cannot infer inputs: parameter {param.name!r} of {name} has no "
                "type hint; give an input generator (--inputs FILE::FUNC)"
            )
        strategies.append(st.from_type(hints[param.name]))
    drawn: list[tuple[Any, ...]] = []

    @with_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.tuples(*strategies))
    def collect(args: tuple[Any, ...]) -> None:
        drawn.append(copy.deepcopy(args))

    collect()
    Path("inputs.pkl").write_bytes(pickle.dumps(drawn))
    print(len(drawn))


def leftovers() -> str | None:
    """Threads or child processes still running after a call returned."""
    import os
    import threading

    found = []
    threads = threading.active_count() - 1
    if threads > 0:
        found.append(f"{threads} thread(s)")
    children = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            children += 1  # at least one child still running
            break
    if children:
        found.append("child process(es)")
    return " and ".join(found) or None


def call_once(fn: Callable[..., Any], args: tuple[Any, ...]) -> dict[str, Any]:
    args = copy.deepcopy(args)
    try:
        result = fn(*args)
        raised = False
    except Exception as exc:  # the reference may raise too: then so must the candidate
        result, raised = exc, True
    try:
        encoded_result, encoded_args = wire.encode(result), wire.encode(args)
    except Exception as exc:  # perfsmith's failure, never the target's
        print(
            f"harness: perfsmith cannot record a {type(result).__name__} result: "
            f"{type(exc).__name__}: {str(exc)[:200]}",
            file=sys.stderr,
        )
        raise SystemExit(RECORD_FAILED) from None
    return {
        "result": encoded_result,
        "raised": raised,
        "args_after": encoded_args,
        "leftover": leftovers(),
    }


def call(path: str, name: str) -> None:
    fn = load(path, name)
    inputs = read_inputs()
    outputs = []
    for args in inputs:
        first = call_once(fn, args)
        first["again"] = call_once(fn, args)["result"]
        outputs.append(first)
    Path("outputs.json").write_text(json.dumps(outputs, allow_nan=False))


def time_calls(path: str, name: str, loops: int, dry: bool, clock: bool = True) -> None:
    """`dry` does everything but the timed calls: the baseline for the outside clock.
    Without `clock` (instruction counting) no clock is read and nothing is written."""
    fn = load(path, name)
    inputs = read_inputs()
    n = len(inputs)
    copies = [copy.deepcopy(args) for _ in range(loops) for args in inputs]
    warm_s = 0.0
    if not dry:  # a dry run is the baseline: no call at all, so no memory from calls
        warm = copy.deepcopy(inputs[0])
        t0 = _clock() if clock else 0.0
        with contextlib.suppress(Exception):  # warm-up: first-call caches, lazy imports
            fn(*warm)
        warm_s = _clock() - t0 if clock else 0.0
    # Inputs on which the function raises are part of its behaviour (correctness compares
    # the exceptions), so their calls are timed like the others and counted.
    raised = 0
    passes: list[float] = []  # the time of each pass over the inputs
    first_call = 0.0
    gc.collect()
    gc.disable()
    start = _clock() if clock else 0.0
    if not dry:
        mark = start
        for i, args in enumerate(copies):
            try:
                fn(*args)
            except Exception:
                raised += 1
            if clock and i == 0:
                first_call = _clock()
            if clock and (i + 1) % n == 0:
                now = _clock()
                passes.append(now - mark)
                mark = now
    elapsed = _clock() - start if clock else 0.0
    gc.enable()
    if not clock:
        return
    Path("timing.json").write_text(
        json.dumps(
            {
                "elapsed_s": elapsed,
                "calls": len(copies),
                "raised": raised,
                "passes": passes[:64],
                # The first pass without its first input (which the warm-up already
                # called), and the warm-up call: cold calls, whatever the function caches.
                "cold_s": (start + passes[0] - first_call) if n > 1 and passes else warm_s,
            }
        )
    )


def main() -> None:
    mode = sys.argv[1]
    try:
        if mode == "generate":
            generate(sys.argv[2], sys.argv[3], [int(s) for s in sys.argv[4].split(",")])
        elif mode == "call":
            call(sys.argv[2], sys.argv[3])
        elif mode == "infer":
            infer(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        elif mode == "count":
            time_calls(
                sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:6] == ["dry"], clock=False
            )
        elif mode == "time":
            time_calls(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:6] == ["dry"])
        else:
            raise SystemExit(f"harness: unknown mode {mode!r}")
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()

"""The kernel harness: runs inside the sandbox, one process per step.

Standalone on purpose (torch and the standard library only): it is copied into the
sandbox as ``_perfsmith_kernel.py`` and run as ``python _perfsmith_kernel.py MODE``
with ``config.json`` beside it. It writes ``result.json``; the ``compile`` step also
writes ``built.json`` (the extensions it built, by name, base64) for the cache.

Modes:
- ``compile``: import the problem and the candidate; the candidate's ``load_inline``
  calls build its extensions (with perfsmith's flags, in the working directory).
- ``compile-only``: compile the candidate's CUDA sources to PTX with nvcc, host code
  type-checked by nvcc's front end (for machines with no GPU: the code is checked,
  nothing is linked or run; a third of the time of a full object build).
- ``run``: import both (extensions come from ``_kcache/NAME.so``), then correctness
  trials with fresh inputs, then interleaved timing rounds with fresh inputs per call,
  every timed output checked against the reference's.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

CONFIG: dict[str, Any] = {}
BUILT: dict[str, str] = {}
CUDA_SNIPPETS: list[tuple[str, str]] = []  # (name, cuda source) seen by load_inline


def load_module(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _merge(base: list[str], extra: Any) -> list[str]:
    extra = [str(f) for f in (extra or [])]
    return list(base) + [f for f in extra if f not in base]


def patch_builds(compile_only: bool = False) -> None:
    """Route every ``load_inline`` through perfsmith: a cached build is loaded as is;
    otherwise the build uses perfsmith's flags in ./_build/NAME and is recorded."""
    import torch.utils.cpp_extension as cx

    real = cx.load_inline

    def load_inline(
        name: str, cpp_sources: Any, cuda_sources: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        if args:
            raise TypeError("perfsmith: pass load_inline's optional arguments by keyword")
        cached = os.path.join("_kcache", f"{name}.so")
        if os.path.exists(cached):
            return load_module(name, cached)
        if compile_only:
            if cuda_sources:
                srcs = [cuda_sources] if isinstance(cuda_sources, str) else list(cuda_sources)
                CUDA_SNIPPETS.append((name, "\n".join(srcs)))
                CONFIG["_cuda_flags_" + name] = kwargs.get("extra_cuda_cflags") or []
            return _Unbuilt(name)
        build = os.path.join(os.getcwd(), "_build", name)
        os.makedirs(build, exist_ok=True)
        cflags = _merge(CONFIG["cflags"], kwargs.pop("extra_cflags", None))
        cuda_cflags = _merge(CONFIG["cuda_cflags"], kwargs.pop("extra_cuda_cflags", None))
        ldflags = _merge(
            ["-fopenmp"] if "-fopenmp" in cflags else [], kwargs.pop("extra_ldflags", None)
        )
        for key in ("build_directory", "verbose", "use_pch"):
            kwargs.pop(key, None)
        includes = [str(p) for p in kwargs.pop("extra_include_paths", None) or []]
        if CONFIG.get("pch") and not cuda_sources:
            # the precompiled torch/extension.h, found before torch's own (see pch.py)
            includes.insert(0, CONFIG["pch"])
        module = real(  # type: ignore[no-untyped-call]
            name,
            cpp_sources,
            cuda_sources,
            extra_cflags=cflags,
            extra_cuda_cflags=cuda_cflags,
            extra_ldflags=ldflags,
            extra_include_paths=includes,
            build_directory=build,
            verbose=False,
            **kwargs,
        )
        BUILT[name] = str(module.__file__)
        return module

    cx.load_inline = load_inline


class _Unbuilt:
    """What load_inline returns in compile-only mode: nothing can be called."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        raise RuntimeError(f"extension {self._name} was only compiled, not built")


_COMMAND = re.compile(r"^(\[\d+/\d+\]|FAILED:|ninja: )|\s-isystem\s|^\S*(c\+\+|g\+\+|nvcc)\s")


def trim_build_log(text: str, limit: int = 40) -> str:
    """What matters in a build log: the compiler's errors, each with the source line and
    caret that follow it; no command lines, no build-directory paths."""
    lines = [row for row in text.splitlines() if not _COMMAND.search(row)]
    keep: list[str] = []
    for i, line in enumerate(lines):
        if re.search(r"error:|error\s*:|undefined reference|undefined symbol", line):
            for row in lines[i : i + 3]:
                if row not in keep[-3:]:
                    keep.append(row)
    if not keep:  # no compiler error line: the exception's own words, then the tail
        keep = [lines[0], *lines[-limit + 1 :]] if lines else [text[:300]]
    out = [re.sub(r"/\S*/_build/[^/\s]+/", "", row)[:300] for row in keep]
    return "\n".join(out[:limit])


# -- checks on the torch namespace (a candidate must not patch the reference) --------


def namespace_ids() -> dict[str, int]:
    import torch.nn.functional as F

    ids: dict[str, int] = {}
    for prefix, obj in (
        ("torch.", torch),
        ("F.", F),
        ("Tensor.", torch.Tensor),
        ("nn.Module.", torch.nn.Module),
    ):
        for attr in dir(obj):
            if attr.startswith("__") and attr not in (
                "__call__",
                "__matmul__",
                "__add__",
                "__mul__",
            ):
                continue
            try:
                ids[prefix + attr] = id(getattr(obj, attr))
            except Exception:
                continue
    return ids


def patched_names(before: dict[str, int], after: dict[str, int]) -> list[str]:
    return sorted(k for k, v in before.items() if after.get(k, v) != v)


# -- comparing outputs ---------------------------------------------------------------


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    tols = CONFIG["tolerances"]
    if dtype in (torch.float16, torch.bfloat16):
        return tols["half"]["atol"], tols["half"]["rtol"]
    return tols["float"]["atol"], tols["float"]["rtol"]


def describe_mismatch(expected: torch.Tensor, got: torch.Tensor, atol: float, rtol: float) -> str:
    e = expected.detach().double().cpu()
    g = got.detach().double().cpu()
    bad = ~torch.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    count = int(bad.sum())
    first = tuple(int(i) for i in bad.nonzero()[0].tolist()) if count else ()
    diff = (g - e).abs().nan_to_num(float("inf"))
    return (
        f"{count} of {e.numel()} elements differ beyond atol={atol:g}, rtol={rtol:g}; "
        f"first at index {list(first)}: expected {e[first].item():.6g}, got "
        f"{g[first].item():.6g}; max abs diff {diff.max().item():.3g}"
    )


def compare(expected: Any, got: Any, where: str = "output") -> str | None:
    """None if ``got`` matches ``expected``; otherwise what differs."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}: expected a tensor, got {type(got).__name__}"
        if got.dtype != expected.dtype:
            return f"{where}: dtype {got.dtype}, expected {expected.dtype}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"{where}: shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if got.device != expected.device:
            return f"{where}: on {got.device}, expected {expected.device}"
        if expected.is_contiguous() and not got.is_contiguous():
            return f"{where}: not contiguous (the reference's output is)"
        if expected.dtype.is_floating_point or expected.is_complex():
            atol, rtol = tolerance(expected.dtype)
            if not torch.allclose(got, expected, rtol=rtol, atol=atol, equal_nan=True):
                return f"{where}: " + describe_mismatch(expected, got, atol, rtol)
        elif not torch.equal(got, expected):
            return f"{where}: " + describe_mismatch(expected, got, 0.0, 0.0)
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{where}: expected a sequence of {len(expected)}, got {type(got).__name__}"
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            problem = compare(e, g, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if expected != got:
        return f"{where}: expected {expected!r}, got {got!r}"
    return None


# -- models and inputs -------------------------------------------------------------


def to_device(values: list[Any], device: str) -> list[Any]:
    return [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]


def clone(values: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def fresh_inputs(problem: ModuleType, seed: int, device: str) -> list[Any]:
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        with torch.device(device):  # drawn on the GPU: fresh inputs for every call stay cheap
            return to_device(list(problem.get_inputs()), device)
    return list(problem.get_inputs())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def tensor_bytes(values: Any) -> int:
    if isinstance(values, torch.Tensor):
        return values.numel() * values.element_size()
    if isinstance(values, (list, tuple)):
        return sum(tensor_bytes(v) for v in values)
    return 0


def build_models(problem: ModuleType, candidate: ModuleType, device: str) -> tuple[Any, Any]:
    init = list(problem.get_init_inputs())
    torch.manual_seed(CONFIG["init_seed"])
    ref = problem.Model(*init)
    torch.manual_seed(CONFIG["init_seed"])
    new = candidate.ModelNew(*init)
    return ref.to(device).eval(), new.to(device).eval()


# -- the steps ---------------------------------------------------------------------


def refill(buffers: list[Any], inputs: list[Any]) -> list[Any]:
    """``inputs`` written into ``buffers`` where a buffer has the same shape, dtype and
    device (in place: the same address); a fresh copy elsewhere."""
    out: list[Any] = []
    for buf, new in zip(buffers, inputs, strict=True):
        same = (
            isinstance(buf, torch.Tensor)
            and isinstance(new, torch.Tensor)
            and buf.shape == new.shape
            and buf.dtype == new.dtype
            and buf.device == new.device
        )
        if same:
            buf.copy_(new)
            out.append(buf)
        else:
            out.append(clone([new])[0])
    return out


def correctness(problem: ModuleType, ref: Any, new: Any, device: str) -> dict[str, Any]:
    kept_alive: list[Any] = []  # reference outputs are never freed: their memory cannot
    # be handed to the candidate's outputs by the caching allocator
    threads = threading.active_count()
    buffers: list[Any] | None = None
    for trial in range(CONFIG["trials"]):
        seed = CONFIG["seed"] + trial
        inputs = fresh_inputs(problem, seed, device)
        # the candidate gets the same buffers every trial, refilled: a result cached by
        # an input's address (or shape) is stale by the second trial, always
        cand_in = clone(inputs) if buffers is None else refill(buffers, inputs)
        buffers = cand_in
        ref_in, before = clone(inputs), clone(inputs)
        with torch.no_grad():
            # the candidate runs first: the reference's result for these inputs does not
            # exist yet anywhere in the process
            try:
                got = new(*cand_in)
                sync(device)
            except Exception as exc:
                return {
                    "correct": False,
                    "failure": f"trial {trial} (seed {seed}): the "
                    f"candidate raised {type(exc).__name__}: {str(exc)[:400]}",
                }
            expected = ref(*ref_in)
            sync(device)
        kept_alive.append(expected)
        problem_text = compare(expected, got)
        if problem_text:
            return {"correct": False, "failure": f"trial {trial} (seed {seed}): {problem_text}"}
        for i, (c, r, b) in enumerate(zip(cand_in, ref_in, before, strict=True)):
            if isinstance(c, torch.Tensor) and not torch.equal(c, r):
                what = "changed" if not torch.equal(c, b) else "left unchanged"
                return {
                    "correct": False,
                    "failure": f"trial {trial} (seed {seed}): input {i} {what} by the "
                    "candidate, unlike the reference (mutation)",
                }
        if threading.active_count() > threads:
            return {"correct": False, "failure": "threads left running after forward returned"}
    return {"correct": True, "failure": None}


class Clock:
    """CPU: perf_counter around the call. CUDA: events around the call on a flushed L2."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.flush: torch.Tensor | None = None
        if self.cuda:
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 2**26
            self.flush = torch.empty(2 * l2 // 4 + 1024, dtype=torch.float32, device=device)

    def time(self, fn: Any, args: list[Any]) -> tuple[float, Any]:
        if self.cuda:
            assert self.flush is not None
            self.flush.zero_()  # L2 holds nothing of this call's data
            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            torch.cuda.synchronize()
            start.record()
            out = fn(*args)
            end.record()
            torch.cuda.synchronize()  # device-wide: work on any stream is counted
            return start.elapsed_time(end) / 1e3, out
        t0 = time.perf_counter()
        out = fn(*args)
        return time.perf_counter() - t0, out


def peak_bandwidth(device: str) -> float | None:
    """Bytes per second of a large device-to-device copy (read plus write)."""
    if not device.startswith("cuda"):
        return None
    n = 256 * 2**20 // 4
    a = torch.empty(n, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    return float(10 * 2 * a.numel() * 4 / (start.elapsed_time(end) / 1e3))


def roofline_inputs(problem: ModuleType, ref: Any, device: str) -> dict[str, Any]:
    """On GPUs: the operator's FLOPs per call and the measured peak for its dtype."""
    if not device.startswith("cuda"):
        return {}
    x = fresh_inputs(problem, CONFIG["seed"] - 1, device)
    flops = operator_flops(ref, clone(x))
    dtypes = [v.dtype for v in x if isinstance(v, torch.Tensor) and v.is_floating_point()]
    peak = peak_flops(device, dtypes[0]) if flops and dtypes else None
    return {"flops": flops, "peak_flops": peak}


def operator_flops(fn: Any, args: list[Any]) -> int:
    """Floating-point operations of one call, as torch's flop counter sees them (matrix
    products and convolutions; elementwise work counts nothing)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args)
    return int(counter.get_total_flops())


def peak_flops(device: str, dtype: torch.dtype) -> float | None:
    """Measured matrix-product throughput of ``dtype`` (floating point) on the GPU."""
    if not device.startswith("cuda") or not dtype.is_floating_point:
        return None
    n = 4096
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    start.record()
    for _ in range(5):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return float(5 * 2 * n**3 / (start.elapsed_time(end) / 1e3))


def compiled_reference(problem: ModuleType, ref: Any, device: str) -> tuple[Any, float]:
    """``torch.compile`` of the reference (the second baseline) and the seconds its
    compilation took (the first call), which the timing leaves out. On a CPU the vector
    ISA comes from the CPU's features, without Inductor's test build of each ISA (a
    user's Inductor cache keeps those after the first run; the sandbox has none)."""
    if device == "cpu":
        import torch._inductor.config as inductor_config

        inductor_config.cpp.vec_isa_ok = True
    compiled = torch.compile(ref)
    x = fresh_inputs(problem, CONFIG["seed"] - 2, device)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(*x)  # type: ignore[no-untyped-call]
    sync(device)
    return compiled, time.perf_counter() - start


def timing(problem: ModuleType, ref: Any, new: Any, device: str) -> dict[str, Any]:
    clock = Clock(device)
    sides = {"reference": ref, "candidate": new}
    extra: dict[str, Any] = {}
    if CONFIG.get("versus_compile"):
        sides["compiled"], extra["compile_s"] = compiled_reference(problem, ref, device)
    base = CONFIG["seed"] + 10_000
    with torch.no_grad():
        for w in range(CONFIG["warmup"]):
            x = fresh_inputs(problem, base - 1 - w, device)
            for fn in sides.values():
                clock.time(fn, clone(x))
        # calls per value: enough that one value of the reference lasts about target_s
        one = 0.0
        for s in range(2):
            x = fresh_inputs(problem, base - 100 - s, device)
            one = max(one, clock.time(ref, x)[0])
        calls = max(1, min(CONFIG["max_calls"], math.ceil(CONFIG["target_s"] / max(one, 1e-7))))
        rounds = CONFIG["rounds"]
        if len(sides) * one * calls * rounds > CONFIG["budget_s"]:
            rounds = max(5, int(CONFIG["budget_s"] / (len(sides) * one * calls)))
        times: dict[str, list[float]] = {side: [] for side in sides}
        names = list(sides)
        in_bytes = out_bytes = 0
        for r in range(rounds):
            # each side goes first as often as the others
            order = names[r % len(names) :] + names[: r % len(names)]
            total = dict.fromkeys(sides, 0.0)
            for c in range(calls):
                x = fresh_inputs(problem, base + r * 1000 + c, device)  # fresh every call
                outs: dict[str, Any] = {}
                for side in order:
                    elapsed, outs[side] = clock.time(sides[side], clone(x))
                    total[side] += elapsed
                problem_text = compare(outs["reference"], outs["candidate"])
                if problem_text:
                    return {
                        "error": f"timed call {c} of round {r} gave a wrong result: {problem_text}"
                    }
                in_bytes, out_bytes = tensor_bytes(x), tensor_bytes(outs["reference"])
            for side in total:
                times[side].append(total[side])
    if "compiled" in times:
        extra["compiled_s"] = times["compiled"]
    return {
        "calls": calls,
        "rounds": rounds,
        "reference_s": times["reference"],
        "candidate_s": times["candidate"],
        "threads": torch.get_num_threads(),
        "bytes": in_bytes + out_bytes,
        "peak_bandwidth": peak_bandwidth(device),
        **extra,
        **roofline_inputs(problem, ref, device),
    }


def step_compile(problem_file: str, candidate_file: str, compile_only: bool) -> dict[str, Any]:
    patch_builds(compile_only=compile_only)
    load_module("problem", problem_file)
    try:
        load_module("candidate", candidate_file)
    except Exception as exc:  # the build's log is in the message
        text = f"{type(exc).__name__}: {exc}"
        return {"compiled": False, "failure": trim_build_log(text)}
    if compile_only:
        errors = []
        for name, source in CUDA_SNIPPETS:
            errors += nvcc_check(name, source)
        if errors:
            return {"compiled": False, "failure": trim_build_log("\n".join(errors))}
    # JSON, not a pickle: the host reads it, and the candidate's code ran in this process
    with open("built.json", "w") as f:
        built = {
            name: base64.b64encode(open(path, "rb").read()).decode() for name, path in BUILT.items()
        }
        json.dump(built, f)
    return {
        "compiled": True,
        "failure": None,
        "pch": bool(CONFIG.get("pch")) and os.path.isfile(f"{CONFIG['pch']}/torch/extension.h.gch"),
        "built": sorted(BUILT),
        "cuda_objects": [n for n, _ in CUDA_SNIPPETS],
    }


def nvcc_check(name: str, source: str) -> list[str]:
    """Compile a CUDA source with torch's headers to PTX: nvcc's front end checks the
    host code and the device code is compiled; the host compiler's pass over torch's
    headers (two thirds of an object build) is skipped."""
    import sysconfig

    from torch.utils.cpp_extension import include_paths

    path = os.path.join("_build", f"{name}.cu")
    os.makedirs("_build", exist_ok=True)
    with open(path, "w") as f:
        f.write("#include <torch/types.h>\n" + source)
    includes = [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    flags = _merge(CONFIG["cuda_cflags"], CONFIG.get("_cuda_flags_" + name))
    command = [
        "nvcc",
        "--ptx",
        path,
        "-o",
        path + ".ptx",
        "-std=c++20",
        f"-arch={CONFIG['cuda_arch']}",
        *includes,
        *flags,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return [f"Error building extension '{name}':", done.stdout, done.stderr]
    return []


def step_run(problem_file: str, candidate_file: str, device: str) -> dict[str, Any]:
    patch_builds()
    problem = load_module("problem", problem_file)
    forward = problem.Model.forward
    before = namespace_ids()
    try:
        candidate = load_module("candidate", candidate_file)
    except Exception as exc:
        return {"compiled": False, "failure": trim_build_log(f"{type(exc).__name__}: {exc}")}
    flags: list[str] = []
    patched = patched_names(before, namespace_ids())
    if patched:
        flags.append(
            "cheat: the candidate replaced torch functions the reference uses: "
            + ", ".join(patched[:5])
        )
    if problem.Model.forward is not forward:
        flags.append("cheat: the candidate replaced the reference Model's forward")
    new_cls = getattr(candidate, "ModelNew", None)
    if new_cls is None:
        return {"compiled": True, "correct": False, "failure": "the candidate defines no ModelNew"}
    if isinstance(new_cls, type) and issubclass(new_cls, problem.Model):
        flags.append("cheat: ModelNew inherits the reference Model")
    if flags:
        return {"compiled": True, "correct": False, "failure": flags[0], "flags": flags}
    torch.set_num_threads(CONFIG["threads"])
    ref, new = build_models(problem, candidate, device)
    result: dict[str, Any] = {"compiled": True, "threads": torch.get_num_threads()}
    result.update(correctness(problem, ref, new, device))
    if result["correct"] and CONFIG["time"]:
        measured = timing(problem, ref, new, device)
        if "error" in measured:
            result.update(correct=False, failure=measured["error"])
        else:
            result["timing"] = measured
    if device.startswith("cuda"):
        result["device_name"] = torch.cuda.get_device_name(device)
    return result


def answer(step: Callable[[], dict[str, Any]], cap: int | None = None) -> None:
    """Run ``step`` and write what it returns, or its error (the message up to ``cap``
    characters, the traceback's end), to ``result.json``: what the host reads. The
    compiler's capture script (``tools/inductor_main.py``) answers the same way."""
    try:
        result = step()
    except Exception as exc:
        tb = traceback.format_exc().strip().splitlines()
        result = {"error": f"{type(exc).__name__}: {str(exc)[:cap]}", "traceback": tb[-8:]}
    with open("result.json", "w") as f:
        json.dump(result, f)


def main() -> None:
    mode = sys.argv[1]
    with open("config.json") as f:
        CONFIG.update(json.load(f))
    sys.path.insert(0, os.getcwd())
    problem, candidate = CONFIG["problem"], CONFIG["candidate"]
    if mode in ("compile", "compile-only"):
        answer(lambda: step_compile(problem, candidate, mode == "compile-only"))
    else:
        answer(lambda: step_run(problem, candidate, CONFIG["device"]))


if __name__ == "__main__":
    main()

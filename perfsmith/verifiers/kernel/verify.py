"""Verify a kernel candidate against a KernelBench-format problem, in the sandbox.

Steps, each its own sandboxed process: static checks (no process at all), compile (the
candidate's ``load_inline`` calls, with perfsmith's flags; built extensions are cached by
the candidate's source hash), then correctness trials and interleaved timing rounds in one
process that loads the cached extensions. The result is what ``perfsmith kernel verify``
prints.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from perfsmith.errors import PerfsmithError
from perfsmith.sandbox.base import SAFE_PATH, Limits, Sandbox, SandboxResult
from perfsmith.verifiers.kernel.cache_lock import exclusive
from perfsmith.verifiers.kernel.cheats import check_kernel_source
from perfsmith.verifiers.kernel.pch import header_flags, precompiled_header
from perfsmith.verifiers.python.stats import paired_speedup, verdict
from perfsmith.verifiers.slot import timing_slot

log = logging.getLogger(__name__)
Device = Literal["cpu", "cuda"]
CPU_FLAGS = ["-O3", "-march=native", "-fopenmp"]
CUDA_FLAGS = ["-O3"]
EXCESSIVE_SPEEDUP = 10.0
HARNESS = "_perfsmith_kernel.py"


class KernelInputError(PerfsmithError):
    """The problem or the candidate file is unusable (a usage error, exit 2)."""


class CompileBaseline(BaseModel):
    """The candidate against ``torch.compile`` of the reference, timed in the same
    interleaved rounds (compilation left out and reported apart)."""

    speedup: float
    ci: tuple[float, float]
    verdict: Literal["faster", "slower", "same"]
    compile_s: float


class KernelResult(BaseModel):
    compiled: bool
    correct: bool
    verdict: Literal["faster", "slower", "same", "incorrect", "uncompiled", "unmeasured"]
    device: str
    failure: str | None = None
    speedup: float | None = None
    ci: tuple[float, float] | None = None
    flags: list[str] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    versus_compile: CompileBaseline | None = None

    @property
    def win(self) -> bool:
        """Faster, correct and not flagged for review."""
        return self.verdict == "faster" and not self.flags


# the kernel languages perfsmith writes and verifies, and how they are named to the LLM
BACKENDS = {"cpp": "C++ with OpenMP and SIMD", "cuda": "CUDA C++", "triton": "Triton"}


@dataclass
class KernelSettings:
    device: Device = "cpu"
    trials: int = 5
    rounds: int = 10
    threshold: float = 0.05
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    atol: float | None = None  # None: by dtype (fp32 1e-4, fp16/bf16 1e-2)
    rtol: float | None = None
    target_s: float = 0.05
    budget_s: float = 60.0
    warmup: int = 2
    seed: int = 42
    time: bool = True
    static_checks: bool = True
    compile_only: bool = False
    cuda_arch: str = "sm_90"
    # time torch.compile of the reference too (the second baseline; about 10 s to compile)
    versus_compile: bool = False


def read_problem(path: str | Path) -> str:
    """The problem's source, checked for the KernelBench contract."""
    source = _read(path, "problem")
    names = _top_level(source, path)
    missing = [n for n in ("Model", "get_inputs", "get_init_inputs") if n not in names]
    if missing:
        raise KernelInputError(
            f"{path} is not a KernelBench problem: it defines no {', '.join(missing)} "
            "(it needs class Model(torch.nn.Module), get_inputs() and get_init_inputs())"
        )
    return source


def read_candidate(path: str | Path) -> str:
    source = _read(path, "candidate")
    check_candidate_source(source, str(path))
    return source


def check_candidate_source(source: str, where: str = "the candidate") -> None:
    if "ModelNew" not in _top_level(source, where):
        raise KernelInputError(f"{where} defines no class ModelNew")


def _read(path: str | Path, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise KernelInputError(f"{what} file {path} does not exist")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelInputError(f"cannot read {what} file {path}: {exc}") from exc


def _top_level(source: str, where: str | Path) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise KernelInputError(
            f"{where} has a syntax error at line {exc.lineno}: {exc.msg}"
        ) from exc
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def harness_source() -> str:
    return (
        resources.files("perfsmith.verifiers.kernel").joinpath("harness_main.py").read_text("utf-8")
    )


def cache_root() -> Path:
    """Where built extensions are kept: PERFSMITH_KERNEL_CACHE_DIR, else ``kernels`` in
    perfsmith's cache directory."""
    given = os.environ.get("PERFSMITH_KERNEL_CACHE_DIR")
    if given:
        return Path(given)
    from perfsmith.paths import cache_dir

    return cache_dir() / "kernels"


def pch_root() -> Path:
    """Where the precompiled torch header is kept (see pch.py): PERFSMITH_KERNEL_PCH_DIR,
    else ``pch`` in the build cache."""
    given = os.environ.get("PERFSMITH_KERNEL_PCH_DIR")
    return Path(given) if given else cache_root() / "pch"


def build_key(candidate: str, settings: KernelSettings) -> str:
    import torch

    blob = json.dumps(
        [
            candidate,
            settings.device,
            settings.compile_only,
            CPU_FLAGS,
            CUDA_FLAGS,
            torch.__version__,
            sys.version,
            platform.machine(),
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def sandbox_environment(settings: KernelSettings) -> dict[str, str]:
    """The environment of a kernel step in the sandbox (also torch's compiler's)."""
    bin_dirs = [str(Path(sys.executable).parent)]
    env: dict[str, str] = {
        "OMP_NUM_THREADS": str(settings.threads),
        # torch.compile of the reference (the second baseline) builds in the sandbox
        "TORCHINDUCTOR_CACHE_DIR": "_inductor",
        "TORCHINDUCTOR_COMPILE_THREADS": "1",
    }
    cuda_home = os.environ.get("CUDA_HOME") or (
        "/usr/local/cuda" if Path("/usr/local/cuda").is_dir() else None
    )
    if cuda_home:
        env["CUDA_HOME"] = cuda_home
        bin_dirs.append(f"{cuda_home}/bin")
    env["PATH"] = ":".join([*bin_dirs, SAFE_PATH])
    if settings.compile_only or settings.device == "cpu":
        env["TORCH_CUDA_ARCH_LIST"] = "9.0"
    return env


def _config(problem: str, candidate: str, settings: KernelSettings) -> dict[str, Any]:
    half = {"atol": settings.atol or 1e-2, "rtol": settings.rtol or 1e-2}
    full = {"atol": settings.atol or 1e-4, "rtol": settings.rtol or 1e-4}
    return {
        "problem": "problem_src.py",
        "candidate": "candidate_src.py",
        "device": "cuda" if settings.device == "cuda" else "cpu",
        "cflags": CPU_FLAGS,
        "cuda_cflags": CUDA_FLAGS,
        "cuda_arch": settings.cuda_arch,
        "tolerances": {"float": full, "half": half},
        "trials": settings.trials,
        "rounds": settings.rounds,
        "seed": settings.seed,
        "init_seed": 0,
        "time": settings.time,
        "warmup": settings.warmup,
        "target_s": settings.target_s,
        "budget_s": settings.budget_s,
        "max_calls": 1000,
        "threads": settings.threads,
        "versus_compile": settings.versus_compile,
    }


def sandbox_limits(settings: KernelSettings, compiling: bool) -> Limits:
    """The limits of a kernel step in the sandbox: a build's, or a run's."""
    # CUDA maps tens of GB of address space up front: RLIMIT_AS must not stand in its way
    memory = 1 << 20 if settings.device == "cuda" else (8192 if compiling else 16384)
    return Limits(
        wall_s=900 if compiling else 600,
        cpu_s=1800 if compiling else 1200,
        memory_mb=memory,
        processes=512,
        file_size_mb=1024,
        disk_mb=4096,
        open_files=1024,
        output_bytes=4_000_000,
    )


def _tail(result: SandboxResult) -> str:
    lines = (result.stderr or result.stdout or result.reason or str(result.status)).strip()
    return " | ".join(lines.splitlines()[-6:])


async def _step(
    sandbox: Sandbox,
    mode: str,
    files: dict[str, bytes],
    settings: KernelSettings,
    collect: list[str],
    shared: list[str] | None = None,
) -> tuple[dict[str, Any], SandboxResult]:
    result = await sandbox.run(
        [sys.executable, "-s", HARNESS, mode],
        files=files,
        collect=["result.json", *collect],
        limits=sandbox_limits(settings, mode != "run"),
        env=sandbox_environment(settings),
        shared=shared or [],
    )
    data = result.files.get("result.json")
    if data is None:
        what = result.reason or result.status.value
        return {
            "error": f"the {mode} step ended without a result ({what}): {_tail(result)}"
        }, result
    out: dict[str, Any] = json.loads(data)
    return out, result


def failed_result(
    settings: KernelSettings,
    *,
    compiled: bool,
    failure: str,
    flags: list[str] | None = None,
    details: dict[str, Any] | None = None,
) -> KernelResult:
    return KernelResult(
        compiled=compiled,
        correct=False,
        failure=failure,
        verdict="incorrect" if compiled else "uncompiled",
        flags=flags or [],
        device=settings.device,
        details=details or {},
    )


async def compile_candidate(
    sandbox: Sandbox, problem: str, candidate: str, settings: KernelSettings
) -> tuple[Path | None, str | None, bool]:
    """Build the candidate's extensions (or find them in the cache).

    Returns (the cache folder holding NAME.so files, the failure, whether it was cached).
    Verifications of the same candidate at once (parallel runs, a batch) build it once:
    the others wait for that build and load it. A candidate the compiler refused is
    refused again with the same errors, without compiling (a small model repeats its
    mistakes)."""
    folder = cache_root() / build_key(candidate, settings)
    if (folder / "ok").is_file():
        return folder, None, True
    refused = folder.with_name(folder.name + ".refused")
    if refused.is_file():
        return None, refused.read_text(encoding="utf-8"), True
    if not re.search(r"\bload(_inline)?\s*\(", candidate):
        # nothing to build ahead (Triton kernels compile when first called)
        empty = cache_root() / "nothing-built"
        empty.mkdir(parents=True, exist_ok=True)
        return empty, None, True
    folder.parent.mkdir(parents=True, exist_ok=True)
    async with exclusive(folder.with_name(folder.name + ".lock")):
        if (folder / "ok").is_file():  # built while this one waited
            return folder, None, True
        if refused.is_file():
            return None, refused.read_text(encoding="utf-8"), True
        return await _build(sandbox, problem, candidate, settings, folder)


# a compiler that was stopped (memory, disk, a signal) says nothing about the source
_STOPPED = re.compile(r"Killed|signal|out of memory|No space left|internal compiler error", re.I)


def _compiler_refused(failure: str) -> bool:
    """Did the compiler itself reject the source (its diagnostics, nothing stopped it)?"""
    return re.search(r"\berror\b", failure) is not None and _STOPPED.search(failure) is None


async def _build(
    sandbox: Sandbox, problem: str, candidate: str, settings: KernelSettings, folder: Path
) -> tuple[Path | None, str | None, bool]:
    config = _config(problem, candidate, settings)
    header = None
    if settings.device == "cpu" and not settings.compile_only:
        # a header built for the candidate's own flags (when some run built one),
        # else perfsmith's (built on first use; also for flags that only name vector
        # features -march=native turns on): GCC takes it where the candidate's flags
        # allow, and parses the header where not
        extra = literal_cflags(candidate)
        if extra:
            flags = header_flags(CPU_FLAGS, extra)
            if flags != CPU_FLAGS:
                header = await precompiled_header(pch_root(), flags, build=False)
        header = header or await precompiled_header(pch_root(), CPU_FLAGS)
        config["pch"] = str(header) if header else None
    files = {
        HARNESS: harness_source().encode(),
        "config.json": json.dumps(config).encode(),
        "problem_src.py": problem.encode(),
        "candidate_src.py": candidate.encode(),
    }
    mode = "compile-only" if settings.compile_only else "compile"
    shared = [str(header)] if header else []
    out, result = await _step(sandbox, mode, files, settings, ["built.json"], shared)
    if header and str(header) in str(out.get("failure") or ""):
        # the precompiled header itself failed this build: once more without it
        log.warning("a build failed on the precompiled header; building without it")
        config["pch"] = None
        files["config.json"] = json.dumps(config).encode()
        out, result = await _step(sandbox, mode, files, settings, ["built.json"])
    if "error" in out:
        return None, str(out["error"]), False
    if not out.get("compiled"):
        # the compiler's own verdict (not a sandbox or limit failure): the same source
        # with the same flags fails the same way
        failure = str(out.get("failure") or "the build failed")
        if _compiler_refused(failure):
            staged = folder.with_name(f"{folder.name}.refused.tmp{os.getpid()}")
            staged.write_text(failure, encoding="utf-8")
            staged.replace(folder.with_name(folder.name + ".refused"))
        return None, failure, False
    try:
        built = _built_extensions(result.files.get("built.json", b"{}"))
    except (ValueError, RecursionError) as exc:
        return None, f"the compile step's output is unusable: {exc}", False
    staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, blob in built.items():
        (staging / f"{name}.so").write_bytes(blob)
    (staging / "ok").write_text(json.dumps(out), encoding="utf-8")
    if not (folder / "ok").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # a build that stopped half-way
    try:
        staging.rename(folder)
    except OSError:
        # another process (a parallel verification) finished the same build first: its
        # build is as good as this one
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "ok").is_file():
            raise
    return folder, None, False


def literal_cflags(candidate: str) -> list[str] | None:
    """The flags the candidate's ``load_inline``/``load`` calls add to perfsmith's, when
    every call gives the same literal list (or none); None when a call computes them,
    the calls differ, or nothing is built."""
    try:
        tree = ast.parse(candidate)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found: list[list[str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in ("load_inline", "load"):
            continue
        given = next((k.value for k in node.keywords if k.arg == "extra_cflags"), None)
        try:
            value = ast.literal_eval(given) if given is not None else []
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            return None
        found.append([str(v) for v in value])
    if not found or any(flags != found[0] for flags in found):
        return None
    return found[0]


_EXTENSION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _built_extensions(data: bytes) -> dict[str, bytes]:
    """The compile step's extensions by name. The candidate's code ran in that step, so
    the file is read as untrusted: JSON, names that are identifiers (they become file
    names here), base64 contents."""
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    built: dict[str, bytes] = {}
    for name, blob in raw.items():
        if not _EXTENSION_NAME.fullmatch(name) or not isinstance(blob, str):
            raise ValueError(f"bad extension entry {name[:80]!r}")
        built[name] = base64.b64decode(blob, validate=True)
    return built


async def verify_kernel(
    sandbox: Sandbox, problem: str, candidate: str, settings: KernelSettings | None = None
) -> KernelResult:
    """Is ``candidate`` (a ModelNew source) correct on ``problem`` (a Model source), and
    faster? Sources, not paths: the kernel workflow verifies LLM proposals the same way."""
    settings = settings or KernelSettings()
    check_candidate_source(candidate)
    if settings.static_checks:
        findings = check_kernel_source(candidate)
        if findings:
            return failed_result(
                settings,
                compiled=False,
                failure=f"rejected before compiling: {findings[0]}",
                flags=[f"cheat: {f}" for f in findings],
            )
    started = time.perf_counter()
    folder, failure, cached = await compile_candidate(sandbox, problem, candidate, settings)
    details: dict[str, Any] = {
        "build_cached": cached,
        "build_s": round(time.perf_counter() - started, 3),
        "backend": sandbox.name,
    }
    if folder is None:
        return failed_result(
            settings, compiled=False, failure=failure or "the build failed", details=details
        )
    if (folder / "ok").is_file():  # whether the build took the precompiled header
        details["pch"] = bool(json.loads((folder / "ok").read_text(encoding="utf-8")).get("pch"))
    if settings.compile_only:
        return KernelResult(
            compiled=True,
            correct=False,
            failure="compiled only: no GPU here to run it on",
            verdict="unmeasured",
            device=settings.device,
            details=details,
        )
    files = {
        HARNESS: harness_source().encode(),
        "config.json": json.dumps(_config(problem, candidate, settings)).encode(),
        "problem_src.py": problem.encode(),
        "candidate_src.py": candidate.encode(),
    }
    for so in folder.glob("*.so"):
        files[f"_kcache/{so.name}"] = so.read_bytes()
    async with timing_slot() if settings.time else contextlib.nullcontext(0.0):
        out, _ = await _step(sandbox, "run", files, settings, [])
    if "error" in out:
        return failed_result(settings, compiled=True, failure=str(out["error"]), details=details)
    if not out.get("compiled", True):
        return failed_result(settings, compiled=False, failure=str(out.get("failure")))
    details["threads"] = out.get("threads")
    if "device_name" in out:
        details["device_name"] = out["device_name"]
    if not out.get("correct"):
        return failed_result(
            settings,
            compiled=True,
            failure=str(out.get("failure")),
            flags=list(out.get("flags", [])),
            details=details,
        )
    if not settings.time:
        return KernelResult(
            compiled=True,
            correct=True,
            verdict="unmeasured",
            device=settings.device,
            details=details,
        )
    return judge_timing(out["timing"], settings, details)


def judge_timing(
    timing: dict[str, Any], settings: KernelSettings, details: dict[str, Any]
) -> KernelResult:
    ref_s: list[float] = timing["reference_s"]
    cand_s: list[float] = timing["candidate_s"]
    estimate = paired_speedup(ref_s, cand_s)
    calls = int(timing["calls"])
    ref_call = sorted(ref_s)[len(ref_s) // 2] / calls
    cand_call = sorted(cand_s)[len(cand_s) // 2] / calls
    flags: list[str] = []
    if estimate.speedup > EXCESSIVE_SPEEDUP:
        flags.append(
            f"review: speedup {estimate.speedup:.1f}x is beyond {EXCESSIVE_SPEEDUP:.0f}x; "
            "not reported as a win until a person has looked"
        )
    bandwidth = timing.get("peak_bandwidth")
    if bandwidth:
        # the roofline: no call can beat moving its bytes at the measured bandwidth, nor
        # doing its FLOPs at the measured matrix-product peak of its dtype
        memory_s = timing["bytes"] / bandwidth
        peak = timing.get("peak_flops")
        compute_s = timing.get("flops", 0) / peak if peak else 0.0
        floor = max(memory_s, compute_s)
        details.update(roofline_s=floor, flops=timing.get("flops"), peak_flops=peak)
        if cand_call < 0.8 * floor:
            bound = "move its inputs and outputs" if memory_s >= compute_s else "do its FLOPs"
            flags.append(
                f"review: {cand_call * 1e6:.1f} us per call is below the {floor * 1e6:.1f} us "
                f"it takes to {bound} at the GPU's measured peak"
            )
    details.update(
        calls=calls,
        rounds=int(timing["rounds"]),
        threads=timing.get("threads"),
        reference_call_s=ref_call,
        candidate_call_s=cand_call,
        reference_s=ref_s,
        candidate_s=cand_s,
        bytes=timing.get("bytes"),
        peak_bandwidth=bandwidth,
    )
    baseline = None
    if timing.get("compiled_s"):
        versus = paired_speedup(timing["compiled_s"], cand_s)
        baseline = CompileBaseline(
            speedup=round(versus.speedup, 6),
            ci=(round(versus.low, 6), round(versus.high, 6)),
            verdict=verdict(versus, settings.threshold),
            compile_s=round(float(timing["compile_s"]), 3),
        )
        details["compiled_call_s"] = sorted(timing["compiled_s"])[len(cand_s) // 2] / calls
    return KernelResult(
        compiled=True,
        correct=True,
        failure=None,
        verdict=verdict(estimate, settings.threshold),
        speedup=round(estimate.speedup, 6),
        ci=(round(estimate.low, 6), round(estimate.high, 6)),
        flags=flags,
        device=settings.device,
        details=details,
        versus_compile=baseline,
    )

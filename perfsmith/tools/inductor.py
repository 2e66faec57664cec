"""Kernels torch's compiler writes, as candidates: no model needed.

Inductor (``torch.compile``'s backend) fuses a problem's operator chain into C++/OpenMP
kernels on CPUs. `capture` runs it on the problem in the sandbox (``inductor_main.py``)
and brings back the code it generates, the operator graph and the reference's profile;
`compiler_candidate` turns that code into a ``ModelNew`` file that builds the same kernels
with ``load_inline`` and calls them directly: its forward allocates the buffers and calls
the kernels, nothing else, so the anti-cheat rules apply to it unchanged. Where the
compiler hands work to an ATen kernel (a matrix product, a convolution), there is no
candidate: `CompilerCandidateError` says which operator.

The threads of every parallel region become a tunable (``PERFSMITH_THREADS``) that
``kernel tune`` tries.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from perfsmith.errors import PerfsmithError
from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.kernel.cache_lock import exclusive
from perfsmith.verifiers.kernel.verify import (
    HARNESS,
    KernelSettings,
    cache_root,
    harness_source,
    sandbox_environment,
    sandbox_limits,
)

SCRIPT = "_perfsmith_inductor.py"

BINDING = re.compile(
    r"^(\w+) = async_compile\.cpp_pybinding\(\[([^\]]*)\], r'''\n(.*?)\n'''\)", re.S | re.M
)
ENTRY = re.compile(r'extern\s+"C"\s+void\s+kernel\s*\(')
PRAGMA = re.compile(r"#pragma omp parallel(?!\s+for\b)(\s+num_threads\(\d+\))?")
INCLUDE = "#include <torch/csrc/inductor/cpp_prefix.h>"


class CompilerCandidateError(PerfsmithError):
    """The compiler's code for a problem cannot become a candidate (and why)."""


@dataclass
class Capture:
    """What the compiler made of a problem (see ``inductor_main.py``)."""

    code: str
    state: list[dict[str, str]]
    inputs: int
    output: str
    graph: list[str]
    profile: list[dict[str, Any]]
    compile_s: float
    cflags: list[str]
    threads: int
    kernels: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Capture:
        return cls(
            code=str(data["code"]),
            state=list(data["state"]),
            inputs=int(data["inputs"]),
            output=str(data["output"]),
            graph=[str(g) for g in data["graph"]],
            profile=list(data["profile"]),
            compile_s=float(data["compile_s"]),
            cflags=[str(f) for f in data["cflags"]],
            threads=int(data["threads"]),
            kernels=[m.group(3) for m in BINDING.finditer(str(data["code"]))],
        )

    @property
    def flags(self) -> list[str]:
        """The compiler's build flags less its macros (its target's vector features)."""
        return [f for f in self.cflags if not f.startswith("-D")]

    @property
    def defines(self) -> list[str]:
        """The compiler's macros as ``#define`` lines (``-DNAME`` or ``-DNAME=VALUE``)."""
        lines = []
        for flag in self.cflags:
            if flag.startswith("-D") and len(flag) > 2:
                name, _, value = flag[2:].partition("=")
                lines.append(f"#define {name} {value}".rstrip())
        return lines

    def kernel_text(self, limit: int = 3000) -> str:
        """The generated C++ kernels, for a prompt (the code to beat)."""
        return "\n".join(self.kernels)[:limit]


def _cache_file(problem: str, threads: int) -> Path:
    import torch

    key = hashlib.sha256(
        json.dumps([problem, threads, torch.__version__, sys.version, "inductor-1"]).encode()
    ).hexdigest()[:24]
    return cache_root() / "compiler" / f"{key}.json"


async def capture(sandbox: Sandbox, problem: str, threads: int) -> Capture:
    """Run torch's compiler on ``problem`` (a KernelBench source) in the sandbox; what it
    made is kept in the kernel cache (the same problem, threads and torch: the same code).
    Processes sharing the cache capture a problem once: the others wait for it."""
    cached = _cache_file(problem, threads)
    if cached.is_file():
        return Capture.from_json(json.loads(cached.read_text(encoding="utf-8")))
    cached.parent.mkdir(parents=True, exist_ok=True)
    async with exclusive(cached.with_name(f"{cached.name}.lock")):
        if cached.is_file():  # captured while this one waited
            return Capture.from_json(json.loads(cached.read_text(encoding="utf-8")))
        return await _capture(sandbox, problem, threads, cached)


async def _capture(sandbox: Sandbox, problem: str, threads: int, cached: Path) -> Capture:
    settings = KernelSettings(device="cpu", threads=threads)
    script = resources.files("perfsmith.tools").joinpath("inductor_main.py").read_text("utf-8")
    result = await sandbox.run(
        [sys.executable, "-s", SCRIPT],
        files={
            SCRIPT: script.encode(),
            HARNESS: harness_source().encode(),
            "config.json": json.dumps({"problem": "problem_src.py", "threads": threads}).encode(),
            "problem_src.py": problem.encode(),
        },
        collect=["result.json"],
        # torch's compiler builds C++ like a candidate's build: the same environment (it
        # sets Inductor's cache folder in the sandbox) and the same limits
        limits=sandbox_limits(settings, compiling=True),
        env=sandbox_environment(settings),
    )
    data = result.files.get("result.json")
    if data is None:
        tail = " | ".join((result.stderr or result.reason or "").strip().splitlines()[-4:])
        raise CompilerCandidateError(f"torch's compiler ended without a result: {tail}")
    out: dict[str, Any] = json.loads(data)
    if "error" in out:
        raise CompilerCandidateError(f"torch's compiler failed on the problem: {out['error']}")
    found = Capture.from_json(out)  # checked before it is kept
    staged = cached.with_name(f"{cached.name}.tmp{os.getpid()}")
    staged.write_text(json.dumps(out), encoding="utf-8")
    staged.replace(cached)
    return found


# --- the wrapper's call(), statement by statement --------------------------------------


def _call_body(code: str) -> list[ast.stmt]:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "call":
            return node.body
    raise CompilerCandidateError("the compiler's code has no call() function")


class _Forward(ast.NodeTransformer):
    """The wrapper's helpers rewritten as plain torch allocation and views; the
    kernels called through the extension."""

    def __init__(self, kernels: set[str]) -> None:
        self.kernels = kernels

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name == "empty_strided_cpu":
            size, stride, dtype = node.args
            return ast.Call(
                func=ast.Attribute(ast.Name("torch", ast.Load()), "empty_strided", ast.Load()),
                args=[size, stride],
                keywords=[ast.keyword("dtype", dtype)],
            )
        if name == "reinterpret_tensor":
            base, *rest = node.args
            return ast.Call(
                func=ast.Attribute(base, "as_strided", ast.Load()), args=rest, keywords=[]
            )
        if name in self.kernels:
            node.func = ast.Attribute(ast.Name("_ext", ast.Load()), name, ast.Load())
            return node
        what = ast.unparse(node.func)
        raise CompilerCandidateError(
            f"the compiler hands work to {what} (an ATen kernel, not one it generates): "
            "no compiler candidate for this problem"
        )


def _forward_lines(body: list[ast.stmt], kernels: set[str], capture: Capture) -> list[str]:
    lines: list[str] = []
    rewrite = _Forward(kernels)
    for stmt in body:
        if isinstance(stmt, ast.Assign) and ast.unparse(stmt.value) == "args":
            target = ast.unparse(stmt.targets[0]).strip("()")
            state = ", ".join(f"self.s{i}" for i in range(len(capture.state)))
            values = ", ".join(x for x in (state, "*inputs") if x)
            unpack = target if "," in target else f"{target},"
            lines.append(f"{unpack} = ({values},)")
            continue
        if isinstance(stmt, ast.Delete):
            continue
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            called = ast.unparse(stmt.value.func)
            if called in ("args.clear", "assert_size_stride", "assert_alignment"):
                continue
        if isinstance(stmt, ast.Return):
            value = stmt.value
            if capture.output == "tensor" and isinstance(value, ast.Tuple) and len(value.elts) == 1:
                value = value.elts[0]
            elif capture.output.startswith("list") and isinstance(value, ast.Tuple):
                value = ast.List(value.elts, ast.Load())
            new = rewrite.visit(ast.Return(value))
            lines.append(ast.unparse(new))
            continue
        if not isinstance(stmt, (ast.Assign, ast.Expr)):
            raise CompilerCandidateError(
                f"the compiler's call() has a statement perfsmith cannot carry over: "
                f"{ast.unparse(stmt)[:120]}"
            )
        lines.append(ast.unparse(ast.fix_missing_locations(rewrite.visit(stmt))))
    return lines


# --- the C++ source ---------------------------------------------------------------------


_POINTER = re.compile(r"^(const\s+)?([\w:]+)\s*\*$")


def _wrapper(name: str, types: list[str]) -> str:
    params, args = [], []
    for i, t in enumerate(types):
        if _POINTER.match(t):
            params.append(f"const at::Tensor& a{i}")
            args.append(f"reinterpret_cast<{t}>(a{i}.data_ptr())")
        else:
            scalar = t.replace("const ", "").strip()
            params.append(f"{scalar} a{i}")
            args.append(f"a{i}")
    return f"void {name}({', '.join(params)}) {{\n  kernel_{name}({', '.join(args)});\n}}\n"


def cpp_source(code: str, threads: int, defines: list[str] | None = None) -> tuple[str, list[str]]:
    """The generated kernels as one C++ source with a wrapper per kernel taking tensors;
    returns it and the kernels' names. ``defines`` (the compiler's macros) open the
    source, after the ``torch/extension.h`` that load_inline puts first, which does not
    read them: as flags they would keep the build from taking the precompiled header."""
    found = list(BINDING.finditer(code))
    if not found:
        raise CompilerCandidateError("the compiler generated no C++ kernel for this problem")
    parts, wrappers, names = [], [], []
    for match in found:
        name, raw_types, body = match.group(1), match.group(2), match.group(3)
        types = [t.strip().strip("'\"") for t in raw_types.split(",") if t.strip()]
        body = body.replace(INCLUDE, "").strip()
        if not ENTRY.search(body):
            raise CompilerCandidateError(f"kernel {name} has no entry point perfsmith knows")
        body = ENTRY.sub(f"static void kernel_{name}(", body, count=1)
        body = PRAGMA.sub("#pragma omp parallel num_threads(PERFSMITH_THREADS)", body)
        parts.append(f"// {name}, as torch's compiler generated it\n{body}\n")
        wrappers.append(_wrapper(name, types))
        names.append(name)
    choices = sorted({1, 2, 4, 8, 16, threads} & set(range(1, max(threads, 1) + 1)) | {threads})
    defined = "".join(f"{line}\n" for line in defines or [])
    head = (
        f"{defined}{INCLUDE}\n\n"
        f"// perfsmith: tune PERFSMITH_THREADS=[{','.join(str(c) for c in choices)}]\n"
        f"#define PERFSMITH_THREADS {threads}\n\n"
    )
    return head + "\n".join(parts) + "\n" + "\n".join(wrappers), names


# --- the problem's __init__, to draw the same parameters ---------------------------------


class _Rename(ast.NodeTransformer):
    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "Model":
            return ast.copy_location(ast.Name("_Weights", node.ctx), node)
        return node


def _weights_prelude(problem: str) -> str:
    """The problem's module without its forward, get_inputs and get_init_inputs: the
    reference's ``__init__`` as ``_Weights``, which draws the parameters the same way."""
    tree = ast.parse(problem)
    keep: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("get_inputs", "get_init_inputs"):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ClassDef) and node.name == "Model":
            node = _Rename().visit(node)
            node.name = "_Weights"
            node.body = [
                n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"
            ] or [ast.Pass()]
        keep.append(node)
    return ast.unparse(ast.Module(keep, type_ignores=[]))


def compiler_candidate(problem: str, capture: Capture, *, problem_name: str = "problem") -> str:
    """A ``ModelNew`` file calling the kernels the compiler generated for ``problem``."""
    kernels = {m.group(1) for m in BINDING.finditer(capture.code)}
    body = _forward_lines(_call_body(capture.code), kernels, capture)  # ATen work refused
    source, names = cpp_source(capture.code, capture.threads, capture.defines)
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    state_lines = []
    for i, s in enumerate(capture.state):
        getter = (
            f"ref.get_parameter({s['name']!r})"
            if s["kind"] == "parameter"
            else (f"ref.get_buffer({s['name']!r})")
        )
        if s["kind"] == "parameter":
            state_lines.append(f"self.s{i} = torch.nn.Parameter({getter}.detach().clone())")
        else:
            state_lines.append(f"self.register_buffer('s{i}', {getter}.detach().clone())")
    init = "\n        ".join(
        ["super().__init__()", "ref = _Weights(*args, **kwargs)", *state_lines]
    )
    forward = "\n        ".join(body)
    flags = json.dumps(capture.flags)
    return f'''"""{problem_name}: the kernels torch's compiler (Inductor) generated for
Model.forward, built with load_inline and called directly (perfsmith's compiler
candidate). The parameters are the reference's, drawn by its own __init__."""

import torch
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
{source}"""

_ext = load_inline(
    name="perfsmith_inductor_{digest}",
    cpp_sources=SOURCE,
    functions={names!r},
    extra_cflags={flags},
)

{_weights_prelude(problem)}


class ModelNew(torch.nn.Module):
    def __init__(self, *args, **kwargs) -> None:
        {init}

    def forward(self, *inputs):
        {forward}
'''

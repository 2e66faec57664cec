"""The precompiled torch header of the C++ builds: built once (also when asked for at
once), checked to be taken by a real load_inline build, shown read-only to the sandboxed
compile step; a header that cannot be built is recorded and the builds go on without it.
The compile step's output is read as untrusted."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Sandbox
from perfsmith.verifiers.kernel import pch
from perfsmith.verifiers.kernel.verify import (
    CPU_FLAGS,
    KernelSettings,
    _built_extensions,
    literal_cflags,
    pch_root,
    read_candidate,
    read_problem,
    verify_kernel,
)
from tests.verifiers.kernel.conftest import EXAMPLES

needs_gcc = pytest.mark.skipif(pch.compiler() is None, reason="no GCC here")


@needs_gcc
async def test_the_header_is_built_once_and_a_cpp_build_takes_it(sandbox: Sandbox) -> None:
    # the session's header (tests/conftest.py): every C++ build of the suite uses it
    first, second = await asyncio.gather(
        pch.precompiled_header(pch_root(), CPU_FLAGS), pch.precompiled_header(pch_root(), CPU_FLAGS)
    )
    assert first is not None and first == second
    gch = first / "torch" / "extension.h.gch"
    assert gch.stat().st_size > 10_000_000 and oct(gch.stat().st_mode)[-3:] == "644"
    # finished headers only (the compiler's flags may have one too), no staging left
    folders = [p.name for p in pch_root().iterdir() if p.is_dir()]
    assert first.name in folders and all("." not in name for name in folders), folders
    built = gch.stat().st_mtime_ns
    assert await pch.precompiled_header(pch_root(), CPU_FLAGS) == first
    assert gch.stat().st_mtime_ns == built
    # a real build in the sandbox sees it (read-only) and the candidate verifies
    problem = read_problem(EXAMPLES / "row_sumsq.py")
    result = await verify_kernel(
        sandbox,
        problem,
        read_candidate(EXAMPLES / "cpp" / "row_sumsq.py"),
        KernelSettings(time=False, versus_compile=False),
    )
    assert result.correct, result.failure
    assert result.details["pch"] is True


@needs_gcc
async def test_a_header_that_cannot_be_built_is_recorded_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await pch.precompiled_header(tmp_path, ["-fno-such-option"]) is None
    (failed,) = tmp_path.glob("*.failed")
    assert "no-such-option" in failed.read_text()
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # no half-built header kept
    calls: list[object] = []
    monkeypatch.setattr(pch, "_build", lambda *a: calls.append(a))
    assert await pch.precompiled_header(tmp_path, ["-fno-such-option"]) is None
    assert calls == []  # not tried again
    monkeypatch.setenv("PERFSMITH_KERNEL_PCH", "off")
    assert await pch.precompiled_header(tmp_path, CPU_FLAGS) is None
    assert calls == []


def test_a_candidates_own_flags_are_read_when_they_are_literal() -> None:
    call = 'load_inline(name="e{i}", cpp_sources=S, functions=["f"]{flags})\n'
    assert literal_cflags(call.format(i=1, flags="")) == []
    fast = call.format(i=1, flags=', extra_cflags=["-ffast-math"]')
    assert literal_cflags(fast) == ["-ffast-math"]
    assert literal_cflags(fast + fast.replace("e1", "e2")) == ["-ffast-math"]
    assert literal_cflags(fast + call.format(i=2, flags="")) is None  # the calls differ
    assert literal_cflags(call.format(i=1, flags=", extra_cflags=FLAGS")) is None  # computed
    assert literal_cflags(call.format(i=1, flags=", extra_cflags=[1]")) is None
    assert literal_cflags("def f(:\n") is None and literal_cflags("x = 1\n") is None
    assert literal_cflags("load_inline(extra_cflags=" + "[" * 50_000 + "]" * 50_000 + ")") is None
    assert pch.merged_flags(CPU_FLAGS, ["-O3", "-ffast-math"]) == [*CPU_FLAGS, "-ffast-math"]


@needs_gcc
def test_flags_that_name_only_features_march_native_has_take_its_header() -> None:
    # x86-64's baseline (SSE2) is in every -march=native: the same target, the same header
    assert pch.header_flags(CPU_FLAGS, ["-msse2", "-O3"]) == CPU_FLAGS
    # turning a feature off, a macro or a code-generation flag: a header of their own
    for extra in (["-mno-sse4.2"], ["-msse2", "-DX"], ["-ffast-math"]):
        assert pch.header_flags(CPU_FLAGS, extra) == pch.merged_flags(CPU_FLAGS, extra)


async def test_a_header_for_other_flags_is_only_built_when_asked(tmp_path: Path) -> None:
    assert await pch.precompiled_header(tmp_path, [*CPU_FLAGS, "-DX"], build=False) is None
    assert not list(tmp_path.iterdir())


def test_the_compile_steps_output_is_read_as_untrusted() -> None:
    good = {"ext_1": base64.b64encode(b"\x7fELF").decode()}
    assert _built_extensions(json.dumps(good).encode()) == {"ext_1": b"\x7fELF"}
    for bad in (
        b"\x80\x04\x95 a pickle",
        b"[]",
        json.dumps({"../../etc/evil": "AAAA"}).encode(),
        json.dumps({"a/b": "AAAA"}).encode(),
        json.dumps({"ext": 1}).encode(),
        json.dumps({"ext": "not base64!"}).encode(),
        b"[" * 100_000 + b"]" * 100_000,
    ):
        with pytest.raises((ValueError, RecursionError)):
            _built_extensions(bad)


async def test_a_candidate_that_forges_its_build_output_is_refused(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # the candidate's own code runs in the compile step: at exit it writes an entry that
    # would land outside the build cache
    forged = tmp_path / "forged"
    candidate = (
        "import atexit, json, torch\n"
        "# built with load_inline( ... ) as far as the verifier can tell\n"
        "def _forge():\n"
        f"    json.dump({{'../../../../..{forged}': 'AAAA'}}, open('built.json', 'w'))\n"
        "atexit.register(_forge)\n"
        "class ModelNew(torch.nn.Module):\n"
        "    def __init__(self, dim):\n        super().__init__()\n"
        "    def forward(self, x):\n        return torch.softmax(x, dim=1)\n"
    )
    result = await verify_kernel(
        sandbox,
        read_problem(EXAMPLES / "softmax.py"),
        candidate,
        KernelSettings(static_checks=False, time=False),
    )
    assert not result.compiled and "unusable" in (result.failure or ""), result
    assert not forged.exists() and not Path(f"{forged}.so").exists()

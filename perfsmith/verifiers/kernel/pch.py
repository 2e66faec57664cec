"""A precompiled ``torch/extension.h`` for the C++ candidates' builds.

Every C++ candidate includes ``torch/extension.h`` (``load_inline`` puts it first), and
parsing it is about half of a small extension's build (27 s on one core here, 14 s with
the header precompiled). GCC takes ``DIR/torch/extension.h.gch`` in place of the header
when ``DIR`` is an include directory and the compile's options match the ones it was
built with; otherwise it parses the header as usual, so a candidate that adds flags of
its own builds as before, only slower.

perfsmith builds the header once per torch, compiler and flag set, on the host, from
torch's own header (no candidate code takes part), checks that a ``load_inline`` build
really uses it, and keeps it in the kernel cache. The compile step sees its folder
read-only (``Sandbox.run(shared=...)``). It takes about 0.8 GB of disk;
``PERFSMITH_KERNEL_PCH=off`` turns it off.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

VERSION = 2  # of the way the header is built: a change builds it again
HEADER = Path("torch") / "extension.h"
GCH = Path("torch") / "extension.h.gch"
# what load_inline passes before the candidate's flags (torch.utils.cpp_extension)
TORCH_CFLAGS = ["-DTORCH_API_INCLUDE_EXTENSION_H", "-fPIC", "-std=c++20"]
_PROBE = r"""
import sys
from torch.utils.cpp_extension import load_inline
load_inline(
    "perfsmith_pch_probe",
    "#include <torch/extension.h>\nint perfsmith_pch_probe() { return 1; }",
    extra_cflags=sys.argv[1].split() + ["-Winvalid-pch", "-Werror=invalid-pch"],
    extra_include_paths=[sys.argv[2]],
    build_directory=sys.argv[3],
    is_python_module=False,
)
"""


def enabled() -> bool:
    return os.environ.get("PERFSMITH_KERNEL_PCH", "on").lower() not in ("off", "0", "no")


def compiler() -> str | None:
    """The C++ compiler torch's builds call (``CXX``, else ``c++``), if it is GCC."""
    found = _gcc(os.environ.get("CXX", "c++"))
    return found[0] if found else None


@functools.cache
def _gcc(name: str) -> tuple[str, str] | None:
    """The compiler's path and ``--version`` text, if it is GCC."""
    cxx = shutil.which(name)
    if cxx is None:
        return None
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (version.stdout.splitlines() or [""])[0]
    if version.returncode != 0 or "clang" in first.lower():
        return None
    return cxx, version.stdout


def _key(cxx: str, cflags: list[str]) -> str:
    import torch

    found = _gcc(cxx)
    blob = json.dumps([VERSION, torch.__version__, torch.__file__, sys.version, found, cflags])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


async def precompiled_header(root: Path, cflags: list[str], *, build: bool = True) -> Path | None:
    """The folder holding ``torch/extension.h.gch`` for CPU builds with ``cflags``,
    in ``root`` (built there first when missing and ``build``, other processes waiting
    for it); None when it is turned off, missing and not to be built, or cannot be built
    (GCC missing, the build or its check failed: recorded, and not tried again)."""
    if not enabled():
        return None
    cxx = compiler()
    if cxx is None:
        return None
    key = _key(cxx, cflags)
    folder, failed = root / key, root / f"{key}.failed"
    if (folder / GCH).is_file():
        return folder
    if failed.is_file() or not build:
        return None
    # on a worker thread, lock and all: a caller that stops waiting (a cancelled run)
    # leaves the build to finish, and the next caller finds it (or waits for it)
    return await asyncio.to_thread(_build_once, cxx, cflags, folder, failed)


def _build_once(cxx: str, cflags: list[str], folder: Path, failed: Path) -> Path | None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder.parent / f"{folder.name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:  # closing the file releases the lock
        fcntl.flock(fd, fcntl.LOCK_EX)  # other processes building it: wait for them
        if (folder / GCH).is_file():
            return folder
        if failed.is_file():
            return None
        return _build(cxx, cflags, folder, failed)
    finally:
        os.close(fd)


def _build(cxx: str, cflags: list[str], folder: Path, failed: Path) -> Path | None:
    from torch.utils.cpp_extension import include_paths

    log.info("precompiling torch/extension.h for kernel builds (once; about a minute)")
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=folder.parent))
    try:
        (staging / "torch").mkdir()
        header = Path(include_paths("cpu")[0]) / HEADER
        # the header itself beside it: a source that includes it again (after the copy
        # load_inline puts first) finds it here, and #pragma once knows it by content
        shutil.copyfile(header, staging / HEADER)
        system = [*include_paths("cpu"), sysconfig.get_path("include", scheme="posix_prefix")]
        command = [
            cxx,
            "-x",
            "c++-header",
            str(header),
            "-o",
            str(staging / GCH),
            *[f"-isystem{path}" for path in system],
            *TORCH_CFLAGS,
            *cflags,
        ]
        built = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if built.returncode != 0:
            _give_up(failed, f"the header did not compile: {built.stderr[-2000:]}")
            return None
        # a build through torch's own load_inline must take it (-Werror=invalid-pch),
        # also where the source includes the header again (as most candidates do)
        with tempfile.TemporaryDirectory(dir=folder.parent) as probe:
            checked = subprocess.run(
                [sys.executable, "-c", _PROBE, " ".join(cflags), str(staging), probe],
                capture_output=True,
                text=True,
                timeout=1800,
            )
        if checked.returncode != 0:
            _give_up(failed, f"a build does not use it: {checked.stderr[-2000:]}")
            return None
        mine = _meta(cxx)
        (staging / "meta.json").write_text(json.dumps({**mine, "cflags": cflags}))
        for path in staging.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / GCH).is_file():  # not a finished one already there
                raise
        for other in folder.parent.iterdir():  # other torch versions' or compilers'
            if other.is_dir() and "." not in other.name and _stale(other, mine):
                shutil.rmtree(other, ignore_errors=True)
        log.info("precompiled torch/extension.h in %.0f s", time.perf_counter() - started)
        return folder
    except (OSError, subprocess.SubprocessError) as exc:
        _give_up(failed, str(exc))
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _meta(cxx: str) -> dict[str, str]:
    import torch

    found = _gcc(cxx)
    return {"torch": torch.__version__, "compiler": found[1] if found else ""}


def _stale(folder: Path, current: dict[str, str]) -> bool:
    """A finished header (others are still being built) for another torch or compiler."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return (folder / GCH).is_file()  # finished, of an earlier layout
    return any(meta.get(k) != v for k, v in current.items())


def merged_flags(base: list[str], extra: list[str]) -> list[str]:
    """The flags a build passes: ``base``, then each of ``extra`` not already there (as
    the compile step merges a candidate's own flags into perfsmith's)."""
    return list(base) + [f for f in extra if f not in base]


def header_flags(base: list[str], extra: list[str]) -> list[str]:
    """The flags of the header a build with ``base`` and then ``extra`` can take:
    ``base``'s own where ``extra`` only names target features that ``base`` already turns
    on (``-mavx2`` beside ``-march=native`` on a machine with AVX2: GCC reports the same
    target options, and takes the header), else the merged flags."""
    merged = merged_flags(base, extra)
    added = merged[len(base) :]
    if not added:
        return list(base)
    if all(f.startswith("-m") for f in added):
        mine = _target_options(tuple(base))
        if mine is not None and mine == _target_options(tuple(merged)):
            return list(base)
    return merged


@functools.cache
def _target_options(flags: tuple[str, ...]) -> str | None:
    """GCC's target options (``-Q --help=target``) under ``flags``; None without GCC."""
    cxx = compiler()
    if cxx is None:
        return None
    try:
        done = subprocess.run(
            [cxx, *flags, "-Q", "--help=target"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _give_up(failed: Path, why: str) -> None:
    log.warning("kernel builds go on without a precompiled header: %s", why.strip())
    failed.write_text(why, encoding="utf-8")
    return None

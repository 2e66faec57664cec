"""Which launcher starts sandboxed commands: the C one, compiled once per machine into
perfsmith's sandbox directory (it starts in well under a millisecond), or launcher.py
where no C compiler is found (about 10 ms more per run)."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).parent
C_SOURCE = HERE / "launcher.c"
PY_SOURCE = HERE / "launcher.py"
INSIDE_DIR = "/opt/perfsmith"


@functools.cache
def launcher_dir() -> Path:
    """Readable by the sandbox's throwaway uids (so not under root's home)."""
    configured = os.environ.get("PERFSMITH_SANDBOX_DIR")
    if configured:
        base = Path(configured)
    elif os.geteuid() == 0:
        base = Path("/var/lib/perfsmith/sandbox")
    else:
        base = Path(tempfile.gettempdir()) / f"perfsmith-{os.geteuid()}"
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        base.chmod(0o711)
        base.parent.chmod(0o711)
    return base


def runtime_paths() -> list[str]:
    """Directories a sandboxed Python needs to see besides /usr: the interpreter, its
    packages, and perfsmith's sandbox folder (the Python launcher's fallback)."""
    paths = {
        sys.base_prefix,
        sys.prefix,
        str(Path(sys.executable).resolve().parent.parent),
        str(HERE.resolve()),
    }
    return sorted(p for p in paths if p and not p.startswith("/usr"))


@functools.cache
def compiled_launcher() -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    digest = hashlib.sha256(C_SOURCE.read_bytes()).hexdigest()[:16]
    target = launcher_dir() / f"launcher-{digest}"
    if target.exists():
        return target
    # functools.cache does not stop threads that ask at once from all compiling: each
    # writes its own file (pid and thread), and the atomic rename makes them agree
    tmp = target.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    done = subprocess.run([cc, "-O2", "-o", str(tmp), str(C_SOURCE)], capture_output=True)
    if done.returncode != 0:
        return None
    tmp.chmod(0o755)
    tmp.replace(target)  # atomic: concurrent first uses agree
    return target


def launcher_command(inside: bool) -> tuple[list[str], Path]:
    """The argv prefix that runs a command under the launcher, and the host file to
    mount when `inside` a container or bwrap (mounted at INSIDE_DIR/<name>)."""
    binary = compiled_launcher()
    host = binary if binary is not None else PY_SOURCE
    path = f"{INSIDE_DIR}/{host.name}" if inside else str(host)
    if binary is not None:
        return [path], host
    return [sys.executable, "-I", "-S", path], host

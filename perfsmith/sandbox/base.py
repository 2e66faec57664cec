"""The Sandbox interface: run untrusted (LLM-written) commands under hard limits.

Every backend returns the same SandboxResult, so callers (profilers, verifiers, the kernel
compiler) never care which one ran the code; the backend used is recorded with the result.
"""

from __future__ import annotations

import base64
import enum
import logging
import os
import posixpath
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_serializer

from perfsmith.errors import PerfsmithError

log = logging.getLogger(__name__)


class SandboxError(PerfsmithError):
    """The sandbox itself could not run (not: the sandboxed command failed)."""


class Status(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # non-zero exit
    TIMEOUT = "timeout"  # wall-clock or CPU limit
    MEMORY_EXCEEDED = "memory_exceeded"
    OUTPUT_EXCEEDED = "output_exceeded"  # stdout/stderr or disk beyond the limit
    KILLED = "killed"  # ended by a signal it did not ask for (SIGSEGV, SIGXFSZ, ...)


SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"


def base_environment(home: str) -> dict[str, str]:
    """What every sandboxed command starts with (the caller's own variables are not
    passed). The run's throwaway uid has no passwd entry, so USER and LOGNAME name it:
    getpass.getuser() (torch's caches ask) reads them first."""
    return {
        "PATH": SAFE_PATH,
        "HOME": home,
        "USER": "sandbox",
        "LOGNAME": "sandbox",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


class Limits(BaseModel):
    """Hard limits for one run. Network is always off."""

    wall_s: float = Field(default=30.0, gt=0)
    cpu_s: float = Field(default=30.0, gt=0)
    memory_mb: int = Field(default=1024, ge=16)
    processes: int = Field(default=64, ge=1)
    output_bytes: int = Field(default=1_000_000, ge=1024, description="stdout and stderr each")
    file_size_mb: int = Field(default=64, ge=1, description="largest single file")
    disk_mb: int = Field(default=256, ge=1, description="all files in the working directory")
    open_files: int = Field(default=256, ge=16)
    files: int = Field(
        default=20_000, ge=16, description="files and directories the run may create"
    )


class SandboxResult(BaseModel):
    status: Status
    exit_code: int | None
    signal: str | None = None
    stdout: str
    stderr: str
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    files: dict[str, bytes] = Field(default_factory=dict)
    backend: str
    reason: str | None = None  # why a limit stopped it, in words

    @property
    def truncated(self) -> bool:
        return self.stdout_truncated or self.stderr_truncated

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @field_serializer("files")
    def _files_b64(self, files: dict[str, bytes]) -> dict[str, str]:
        return {k: base64.b64encode(v).decode() for k, v in files.items()}

    def to_json_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["truncated"] = self.truncated
        return data


@dataclass(frozen=True)
class Command:
    """One command for a backend to run, its arguments checked and defaulted."""

    argv: list[str]
    files: dict[str, bytes]
    limits: Limits
    collect: list[str]
    env: dict[str, str]
    stdin: bytes | None
    # host directories the command sees read-only at their own paths
    shared: tuple[str, ...] = ()


@runtime_checkable
class Sandbox(Protocol):
    """Runs a command in a fresh working directory holding `files`, under `limits`.
    Backends subclass it and implement `execute`."""

    @property
    def name(self) -> str: ...

    async def run(
        self,
        command: Sequence[str],
        *,
        files: Mapping[str, bytes] | None = None,
        limits: Limits | None = None,
        collect: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        shared: Sequence[str] = (),
    ) -> SandboxResult:
        """Run ``command`` with ``files`` in its working directory; ``collect``: the files
        to bring back; ``env``: added to the sandbox's own environment; ``shared``: host
        directories (absolute) the command may read, at their own paths, and not write."""
        if not command:
            raise SandboxError("no command to run")
        return await self.execute(
            Command(
                list(command),
                dict(files or {}),
                limits or Limits(),
                list(collect),
                dict(env or {}),
                stdin,
                tuple(check_shared(path) for path in shared),
            )
        )

    async def execute(self, command: Command) -> SandboxResult:
        """Run one checked command (the backend's part of `run`)."""
        ...

    async def close(self) -> None: ...


def check_shared(path: str) -> str:
    """A host directory shown read-only inside: absolute, normalized, existing."""
    norm = posixpath.normpath(path)
    if not posixpath.isabs(path) or "\0" in path or not os.path.isdir(norm):
        raise SandboxError(f"shared directory {path!r} must be an existing absolute directory")
    return norm


def check_relative(path: str) -> str:
    """A file name inside the working directory: relative, normalized, no `..`."""
    norm = posixpath.normpath(path)
    if not path or norm.startswith(("/", "../")) or norm in ("..", ".") or "\0" in path:
        raise SandboxError(f"sandbox file name {path!r} must be a relative path inside the sandbox")
    return norm


async def run_python(
    sandbox: Sandbox,
    code: str,
    *,
    files: Mapping[str, bytes] | None = None,
    limits: Limits | None = None,
    collect: Sequence[str] = (),
    args: Sequence[str] = (),
) -> SandboxResult:
    """Run a Python snippet with the same interpreter (and packages) as perfsmith."""
    all_files = dict(files or {})
    all_files["__main__.py"] = code.encode()
    return await sandbox.run(
        [sys.executable, "-I", "__main__.py", *args],
        files=all_files,
        limits=limits,
        collect=collect,
    )


def make_result(
    backend: str,
    limits: Limits,
    ended: Exit,
    output: tuple[bytes | bytearray, bytes | bytearray],
    wall_s: float,
    files: dict[str, bytes],
) -> SandboxResult:
    """The result of a finished run of ``backend``: its ``output`` (stdout, stderr) as
    read, under the caps of ``limits``. ``ended.verdict`` is set when the sandbox stopped
    the run itself (a limit); otherwise the exit code (negative: a signal) decides."""
    out, err = output
    reason: str | None
    sig: str | None
    code, cpu_s, max_rss_mb = ended.code, ended.cpu_s, ended.max_rss_mb
    if ended.verdict is not None:
        status, reason = ended.verdict
        sig = "SIGKILL"
    elif code is None:
        status, sig, reason = Status.KILLED, None, "the run ended without an exit status"
    else:
        status, sig, reason = classify_exit(code, bytes(err[-4096:]), cpu_s, limits)
    cap = limits.output_bytes
    return SandboxResult(
        status=status,
        exit_code=code if code is not None and code >= 0 else None,
        signal=sig,
        stdout=bytes(out[:cap]).decode("utf-8", errors="replace"),
        stderr=bytes(err[:cap]).decode("utf-8", errors="replace"),
        stdout_truncated=len(out) > cap,
        stderr_truncated=len(err) > cap,
        wall_s=round(wall_s, 6),
        cpu_s=round(cpu_s, 6),
        max_rss_mb=round(max_rss_mb, 3),
        files=files,
        backend=backend,
        reason=reason,
    )


def parse_report(data: bytes) -> dict[str, float] | None:
    """The launcher's report: wait status, CPU seconds and peak RSS (KB) of the command."""
    try:
        status, cpu, rss = data.decode().split()
        return {"status": int(status), "cpu_s": float(cpu), "max_rss_kb": float(rss)}
    except ValueError:
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def agrees(report: dict[str, float], launcher_code: int) -> bool:
    """Whether the launcher's own exit code (code, or 128 + signal) matches the command's
    wait status it reported."""
    reported = os.waitstatus_to_exitcode(int(report["status"]))
    expected = reported if reported >= 0 else 128 - reported
    return launcher_code == expected


Verdict = tuple["Status", str]
_SIGNALS = frozenset(int(s) for s in signal.Signals)


@dataclass(frozen=True)
class Exit:
    """How a command ended, from the launcher's report and its own exit status."""

    code: int | None
    cpu_s: float
    max_rss_mb: float
    verdict: Verdict | None


def settle_exit(
    report: dict[str, float] | None,
    launcher_code: int | None,
    verdict: Verdict | None,
    *,
    cpu_s: float = 0.0,
    max_rss_mb: float = 0.0,
) -> Exit:
    """The command's exit code, CPU time and peak memory (``cpu_s`` and ``max_rss_mb``
    where there is no report). The launcher's exit mirrors the command's: a report that
    says otherwise was not written by the launcher (the command forged it), and the exit
    status decides; death by signal N, which the launcher (and bwrap) give as 128 + N,
    becomes -N."""
    if report is not None and launcher_code is not None and not agrees(report, launcher_code):
        log.warning("sandbox: a report (%s) contradicts the exit status %d", report, launcher_code)
        report = None
        verdict = verdict or (Status.KILLED, "the command forged the sandbox's report")
    if report is not None:
        reported = os.waitstatus_to_exitcode(int(report["status"]))
        return Exit(reported, float(report["cpu_s"]), float(report["max_rss_kb"]) / 1024, verdict)
    if launcher_code is not None and launcher_code > 128 and launcher_code - 128 in _SIGNALS:
        return Exit(-(launcher_code - 128), cpu_s, max_rss_mb, verdict)
    return Exit(launcher_code, cpu_s, max_rss_mb, verdict)


def classify_exit(
    returncode: int, stderr_tail: bytes, cpu_s: float, limits: Limits
) -> tuple[Status, str | None, str | None]:
    """Status, signal name and reason for a process that ended on its own."""
    import signal as _signal

    if returncode < 0:
        sig = _signal.Signals(-returncode)
        if sig is _signal.SIGXCPU or (sig is _signal.SIGKILL and cpu_s >= limits.cpu_s * 0.95):
            return Status.TIMEOUT, sig.name, f"CPU time limit of {limits.cpu_s:g} s"
        if sig is _signal.SIGKILL:
            return Status.MEMORY_EXCEEDED, sig.name, "killed by the kernel (out of memory)"
        if sig is _signal.SIGXFSZ:
            return Status.OUTPUT_EXCEEDED, sig.name, f"file larger than {limits.file_size_mb} MB"
        return Status.KILLED, sig.name, f"ended by {sig.name}"
    if returncode == 0:
        return Status.OK, None, None
    if (
        b"MemoryError" in stderr_tail
        or b"Cannot allocate memory" in stderr_tail
        or (b"bad_alloc" in stderr_tail)
    ):
        return Status.MEMORY_EXCEEDED, None, f"memory limit of {limits.memory_mb} MB"
    if returncode == 128 + 9 or returncode == 137:
        return Status.MEMORY_EXCEEDED, "SIGKILL", "killed (out of memory)"
    return Status.ERROR, None, None

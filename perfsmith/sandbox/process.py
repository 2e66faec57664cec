"""The process backend: a child process under rlimits, in its own session, network,
mount, IPC and UTS namespaces, as a throwaway unprivileged uid, with a seccomp filter;
or, when bubblewrap is installed, inside bwrap (read-only system, private /tmp, no
network, no capabilities; a pid namespace too when not running as root).

Running as root, each run gets its own uid, so the process limit is exact and every
process the run left behind (daemons included) is killed afterwards, and its working
directory appears at one fixed path (repeatable runs). Not as root, the namespaces and
the uid drop are unavailable: use bubblewrap or docker there. A small launcher is the
command's parent and reports its exit status and resource usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

from perfsmith.sandbox import base, confine
from perfsmith.sandbox.base import Command, Limits, Sandbox, SandboxError, SandboxResult, Status
from perfsmith.sandbox.files import collect_files, place_files
from perfsmith.sandbox.launch import INSIDE_DIR, launcher_command, launcher_dir, runtime_paths

log = logging.getLogger(__name__)
_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()
UID_BASE, UID_SPAN = 200_000, 100_000
FIXED_WORKDIR = "/tmp/sandbox"  # where the working directory appears, as root
PRIVATE_TMP, PRIVATE_SHM = ".tmp", ".shm"  # under bwrap: /tmp and /dev/shm


def _allocate_uid() -> int:
    with _uids_lock:
        while True:
            uid = UID_BASE + random.randrange(UID_SPAN)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _release_uid(uid: int) -> None:
    with _uids_lock:
        _uids_in_use.discard(uid)


def _dir_usage(root: str, byte_limit: int, entry_limit: int) -> tuple[int, int]:
    """Bytes (allocated blocks) and entries under `root`, counted until either limit."""
    total = entries = 0
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    entries += 1
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=False):
                        total += e.stat(follow_symlinks=False).st_blocks * 512
                    if total > byte_limit or entries > entry_limit:
                        return total, entries
        except OSError:
            continue
    return total, entries


RUN_PREFIX = "run-"


def remove_stale_runs(root: str | None) -> list[str]:
    """Working directories of runs whose perfsmith process is gone (killed with -9):
    named run-<pid>-..., removed at the next start. Returns what was removed."""
    folder = root or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        parts = name.split("-")
        if len(parts) < 3 or parts[0] + "-" != RUN_PREFIX or not parts[1].isdigit():
            continue
        path = os.path.join(folder, name)
        try:  # as root a run's folder belongs to the run's uid; otherwise to us
            if os.geteuid() != 0 and os.stat(path).st_uid != os.geteuid():
                continue
        except OSError:
            continue
        if not base.pid_alive(int(parts[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _workdir_root(is_root: bool) -> str | None:
    """Where working directories live. As root not under /tmp, which each run replaces
    with a private tmpfs; the parent must be enterable by the run's uid."""
    if not is_root and not os.environ.get("PERFSMITH_SANDBOX_DIR"):
        return None
    return str(launcher_dir())


def _read_report(fd: int) -> dict[str, float] | None:
    try:
        os.set_blocking(fd, False)
        data = os.read(fd, 4096)
    except OSError:
        data = b""
    finally:
        os.close(fd)
    return base.parse_report(data)


def _stage_dir() -> str:
    """An empty directory outside /tmp where a run's namespace stages its mounts."""
    stage = launcher_dir() / ".stage"
    stage.mkdir(mode=0o700, exist_ok=True)
    return str(stage)


def _has_exited(pid: int) -> bool:
    """Whether the child exited, without reaping it (its rusage is read later)."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


class ProcessSandbox(Sandbox):
    """`bubblewrap=True` runs the command under bwrap (and names the backend so)."""

    def __init__(self, *, bubblewrap: bool = False) -> None:
        self.is_root = os.geteuid() == 0
        self.bwrap = shutil.which("bwrap") if bubblewrap else None
        if bubblewrap and self.bwrap is None:
            raise SandboxError("bubblewrap is not installed (Debian: apt-get install bubblewrap)")
        self._seccomp = confine.seccomp_program()
        stale = remove_stale_runs(_workdir_root(self.is_root))
        if stale:
            log.info("removed %d working directories of dead runs", len(stale))

    @property
    def name(self) -> str:
        return "bubblewrap" if self.bwrap else "process"

    async def close(self) -> None:
        pass

    async def execute(self, command: Command) -> SandboxResult:
        c = command
        return await asyncio.to_thread(self._run_sync, c)

    # -- the blocking part, on a worker thread ---------------------------------------

    def _run_sync(self, c: Command) -> SandboxResult:
        workdir = tempfile.mkdtemp(
            prefix=f"{RUN_PREFIX}{os.getpid()}-", dir=_workdir_root(self.is_root)
        )
        uid = _allocate_uid() if self.is_root else None
        try:
            place_files(workdir, c.files, owner=uid)
            if self.bwrap:
                for private in (PRIVATE_TMP, PRIVATE_SHM):
                    os.mkdir(os.path.join(workdir, private))
                    os.chmod(os.path.join(workdir, private), 0o1777)
            return self._execute(c, workdir, uid)
        finally:
            if uid is not None:
                confine.kill_uid(uid)
                _release_uid(uid)
            shutil.rmtree(workdir, ignore_errors=True)

    def _environment(self, workdir: str, extra: dict[str, str]) -> dict[str, str]:
        home = "/sandbox" if self.bwrap else (FIXED_WORKDIR if self.is_root else workdir)
        return {**base.base_environment(home), **extra}

    def _bwrap_command(
        self, command: list[str], workdir: str, seccomp_fd: int | None, shared: tuple[str, ...]
    ) -> list[str]:
        assert self.bwrap is not None
        args = [
            self.bwrap,
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--ro-bind-try",
            "/etc/ld.so.cache",
            "/etc/ld.so.cache",
            "--ro-bind-try",
            "/etc/alternatives",
            "/etc/alternatives",
            "--ro-bind-try",
            "/etc/localtime",
            "/etc/localtime",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            # /tmp and /dev/shm are folders of the working directory: the watch on its
            # bytes and files covers them, and they go with it.
            "--bind",
            f"{workdir}/{PRIVATE_TMP}",
            "/tmp",
            "--bind",
            f"{workdir}/{PRIVATE_SHM}",
            "/dev/shm",
        ]
        for path in [*runtime_paths(), *shared]:
            args += ["--ro-bind-try", path, path]
        _, launcher = launcher_command(inside=True)
        args += ["--ro-bind", str(launcher), f"{INSIDE_DIR}/{launcher.name}"]
        args += ["--bind", workdir, "/sandbox", "--chdir", "/sandbox"]
        # bwrap's own root (a tmpfs holding the mount points) read-only: only the binds
        # above are writable.
        args += ["--remount-ro", "/dev", "--remount-ro", "/"]
        if seccomp_fd is not None:
            args += ["--seccomp", str(seccomp_fd)]
        return [*args, "--", *command]

    def _preexec(
        self, uid: int | None, limits: Limits, workdir: str, shared: tuple[str, ...]
    ) -> Callable[[], None]:
        """Runs in the child before exec. As root: namespaces (PID included), a read-only
        view of every mount with private /tmp, /var/tmp and /dev/shm, and the limits; the
        launcher (root, out of the command's reach) drops to `uid` and installs the
        filter in the command's process only. Not as root: the limits and the filter."""
        bwrap = self.bwrap is not None
        program = self._seccomp
        runtime = [*runtime_paths(), *shared]
        stage = _stage_dir() if uid is not None else ""

        def setup() -> None:
            if uid is not None:
                # Also under bwrap (which makes its own PID namespace): bwrap runs as the
                # run's uid and must see the runtime.
                confine.private_namespaces(
                    tmp_mb=limits.disk_mb,
                    inodes=limits.files,
                    expose=runtime,
                    stage=stage,
                    pid_namespace=not bwrap,
                )
                if bwrap:
                    confine.bind_writable(workdir, workdir)  # for bwrap to bind it on
                else:
                    # The same path every run (as under bwrap): paths end up in hashed
                    # strings, and repeatable runs need repeatable hashes.
                    confine.bind_workdir(workdir, FIXED_WORKDIR)
            confine.apply_limits(limits, per_uid_processes=uid is not None)
            if uid is not None and bwrap:
                confine.drop_privileges(uid)
            confine.die_with_parent()  # after any uid change, which would clear it
            if uid is None and not bwrap and program is not None:
                confine.install_seccomp(program)

        return setup

    def _execute(self, c: Command, workdir: str, uid: int | None) -> SandboxResult:
        command, limits, collect, env, stdin = c.argv, c.limits, c.collect, c.env, c.stdin
        seccomp_r = seccomp_w = None
        confined = uid is not None and not self.bwrap  # the launcher drops to the uid
        if (self.bwrap or confined) and self._seccomp is not None:
            seccomp_r, seccomp_w = os.pipe()
            os.write(seccomp_w, self._seccomp)
            os.close(seccomp_w)
        # A small launcher is the command's parent and reports its exit status and rusage
        # on a pipe the command cannot reach: wait4 on our own child would count the
        # pre-exec copy of this (large) Python process in the peak memory, and under a
        # pid namespace would miss the command's CPU time.
        report_r, report_w = os.pipe()
        extra_env = {"PERFSMITH_REPORT_FD": str(report_w)}
        if confined:
            extra_env["PERFSMITH_UID"] = str(uid)
            if seccomp_r is not None:
                extra_env["PERFSMITH_SECCOMP_FD"] = str(seccomp_r)
        prefix, _ = launcher_command(inside=self.bwrap is not None)
        if self.bwrap:
            argv = self._bwrap_command([*prefix, *command], workdir, seccomp_r, c.shared)
        else:
            argv = [*prefix, *command]
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env={**self._environment(workdir, env), **extra_env},
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
                pass_fds=tuple(fd for fd in (seccomp_r, report_w) if fd is not None),
                preexec_fn=self._preexec(uid, limits, workdir, c.shared),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError(f"cannot start {argv[0]!r} in the sandbox: {exc}") from exc
        finally:
            os.close(report_w)
            if seccomp_r is not None:
                os.close(seccomp_r)
        if stdin is not None and proc.stdin is not None:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except OSError:
                pass
        out, err, verdict = self._monitor(proc, workdir, limits, started)
        wall = time.perf_counter() - started
        # wait4 (not Popen.wait) to get this child's own resource usage.
        _, status_word, usage = os.wait4(proc.pid, 0)
        cpu, rss = usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024
        code = os.waitstatus_to_exitcode(status_word)
        proc.returncode = code  # reaped here: keep Popen from waiting again
        report = _read_report(report_r)
        ended = base.settle_exit(report, code, verdict, cpu_s=cpu, max_rss_mb=rss)
        if ended.verdict is None and report is None and ended.code == -signal.SIGKILL:
            killed = (Status.KILLED, "the command killed the sandbox's supervisor")
            ended = dataclasses.replace(ended, verdict=killed)
        files = collect_files(workdir, collect, limits.file_size_mb * 1024 * 1024)
        return base.make_result(self.name, limits, ended, (out, err), wall, files)

    def _monitor(
        self, proc: subprocess.Popen[bytes], workdir: str, limits: Limits, started: float
    ) -> tuple[bytearray, bytearray, tuple[Status, str] | None]:
        """Read output under its cap, watch the clock and the disk; kill on a breach."""
        assert proc.stdout is not None and proc.stderr is not None
        out_buf, err_buf = bytearray(), bytearray()
        buffers = {proc.stdout.fileno(): out_buf, proc.stderr.fileno(): err_buf}
        sel = selectors.DefaultSelector()
        for f in (proc.stdout, proc.stderr):
            os.set_blocking(f.fileno(), False)
            sel.register(f.fileno(), selectors.EVENT_READ)
        verdict: tuple[Status, str] | None = None
        deadline = started + limits.wall_s
        next_disk_check = started + 0.05
        exited_at: float | None = None
        disk_limit = limits.disk_mb * 1024 * 1024
        while sel.get_map():
            now = time.perf_counter()
            for key, _ in sel.select(timeout=0.02):
                fd = key.fd
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                buf = buffers[fd]
                buf += chunk
                if len(buf) > limits.output_bytes:
                    del buf[limits.output_bytes + 1 :]
                    verdict = verdict or (
                        Status.OUTPUT_EXCEEDED,
                        f"output over {limits.output_bytes} bytes",
                    )
            if verdict is None and now > deadline:
                verdict = (Status.TIMEOUT, f"wall-clock limit of {limits.wall_s:g} s")
            if verdict is None and now >= next_disk_check:
                next_disk_check = now + 0.05
                size, entries = _dir_usage(workdir, disk_limit, limits.files)
                if size > disk_limit:
                    verdict = (Status.OUTPUT_EXCEEDED, f"files over {limits.disk_mb} MB")
                elif entries > limits.files:
                    verdict = (Status.OUTPUT_EXCEEDED, f"more than {limits.files} files")
            if verdict is not None:
                break
            if exited_at is None and _has_exited(proc.pid):
                exited_at = now
            # The child exited but something it left behind still holds the pipes open.
            if exited_at is not None and now - exited_at > 0.2:
                break
        if verdict is not None or sel.get_map():
            self._kill(proc)
        for key in list(sel.get_map().values()):
            sel.unregister(key.fd)
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        return out_buf, err_buf, verdict

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

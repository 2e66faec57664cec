"""The docker backend: warm containers on a real engine, one run at a time each.

Containers run perfsmith's own image (`perfsmith sandbox build-image`: an empty root
filesystem with users, the loader cache and mount points, made with `docker import`,
since no image can be pulled) with the host's /usr and Python runtime mounted read-only,
no network, a read-only root, tmpfs working space, all capabilities dropped,
no-new-privileges, a pids limit, memory and swap limits and a CPU quota. Each run gets a
fresh directory, its processes are killed and its files removed before the container
serves the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import io
import json
import os
import shutil
import signal
import tarfile
import tempfile
import threading
import time
from importlib.metadata import version
from itertools import count
from pathlib import Path
from typing import Any

from perfsmith.sandbox import base
from perfsmith.sandbox.base import Command, Limits, Sandbox, SandboxError, SandboxResult, Status
from perfsmith.sandbox.confine import ADDR_NO_RANDOMIZE, DENIED_SYSCALLS, ENOSYS, NAMESPACE_FLAGS
from perfsmith.sandbox.files import collect_files, place_files
from perfsmith.sandbox.launch import INSIDE_DIR, launcher_command, launcher_dir, runtime_paths

NAMESPACE_FLAG_BITS = [1 << i for i in range(32) if NAMESPACE_FLAGS >> i & 1]
IMAGE_REPO = "perfsmith-sandbox"
SANDBOX_UID = 65534
# a container pool: memory, processes and disk limits, and the shared directories mounted
_PoolKey = tuple[int, int, int, tuple[str, ...]]
_runs = count(1)


def image_tag() -> str:
    return f"{IMAGE_REPO}:{version('perfsmith')}"


def _client(timeout: float = 30) -> Any:
    import docker

    return docker.from_env(timeout=timeout)


def docker_unavailable_reason() -> str | None:
    """None when a docker engine answers, else why not (for skips and `auto`)."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed"
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        return f"no docker engine answers ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def _rootfs_tar() -> bytes:
    """The image's whole root filesystem: mount points, users, the loader's cache."""
    buf = io.BytesIO()
    # each path once: current engines refuse a layer that names a path twice (the
    # runtime's directories share parents with the mount points)
    added: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            if info.name in added:
                return
            added.add(info.name)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            add(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            add(info, data)

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            add(info)

        # sbin is a real directory: the engine mounts its init (docker-init) there.
        for d in ("etc", "usr", "proc", "dev", "sys", "run", "opt", "opt/perfsmith", "var", "sbin"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_dir("sandbox", 0o777)
        for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
            add_link(link, target)
        add_file(
            "etc/passwd",
            f"root:x:0:0:root:/root:/bin/sh\n"
            f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/sandbox:/bin/sh\n".encode(),
        )
        add_file("etc/group", f"root:x:0:\nsandbox:x:{SANDBOX_UID}:\n".encode())
        add_file("etc/hosts", b"127.0.0.1 localhost\n")
        for path in ("/etc/ld.so.cache", "/etc/localtime"):
            if Path(path).is_file():
                add_file(path.lstrip("/"), Path(path).read_bytes())
        alternatives = Path("/etc/alternatives")
        if alternatives.is_dir():
            add_dir("etc/alternatives")
            for entry in sorted(alternatives.iterdir()):
                if entry.is_symlink():
                    add_link(f"etc/alternatives/{entry.name}", os.readlink(entry))
        for d in runtime_paths():
            parts = Path(d).parts[1:]
            for i in range(1, len(parts) + 1):
                add_dir("/".join(parts[:i]))
    return buf.getvalue()


# Kernel objects that outlive a process inside one container's IPC namespace, which every
# run in a warm container shares: System V shared memory, semaphores, message queues and
# POSIX message queues. Refused, so that no run can leave state for the next.
CROSS_RUN_IPC = ["shmget", "semget", "msgget", "mq_open"]


def _seccomp_profile() -> str:
    """The engine's seccomp profile: the same syscalls denied as in the process backend
    (tracing, mounts, namespaces, modules, keys, eBPF, perf, io_uring), clone() with any
    namespace flag, clone3() as not implemented (its flags are out of a filter's reach;
    the C library falls back to clone), and the IPC objects that outlive a run."""
    clone_rules = [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }
        for flag in NAMESPACE_FLAG_BITS
    ]
    return json.dumps(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {
                    "names": sorted(DENIED_SYSCALLS | set(CROSS_RUN_IPC)),
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1,
                },
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
                *clone_rules,
                {  # personality() only to turn address randomization off
                    "names": ["personality"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": 1,
                    "args": [{"index": 0, "value": ADDR_NO_RANDOMIZE, "op": "SCMP_CMP_NE"}],
                },
            ],
        }
    )


def build_image(*, force: bool = False) -> str:
    """Build (or find) the sandbox image locally; returns its tag."""
    client = _client()
    tag = image_tag()
    try:
        if not force:
            try:
                client.images.get(tag)
                return tag
            except Exception:
                pass
        repo, version = tag.split(":")
        client.api.import_image_from_data(
            _rootfs_tar(),
            repository=repo,
            tag=version,
            changes=[f"USER {SANDBOX_UID}:{SANDBOX_UID}", "WORKDIR /sandbox"],
        )
        client.images.get(tag)
        return tag
    finally:
        client.close()


# The box's space on the host: `space` is /sandbox (the runs' folders and reports), `tmp`
# and `shm` are /tmp and /dev/shm, out of /sandbox's sight.
SPACE = "space"
PRIVATE_DIRS = {"tmp": "/tmp", "shm": "/dev/shm"}


class _Box:
    """One warm container and its working space on the host (a tmpfs of the run's disk
    limit when perfsmith runs as root), mounted at /sandbox; its /tmp and /dev/shm are
    folders of that space, emptied after every run. As root, perfsmith holds a lock on
    the space's `.alive` file for the box's life: the container's main process waits for
    it, so when perfsmith dies, by any signal, the container ends with every process in
    it."""

    def __init__(self, container: Any, host_dir: str, mounted: bool, alive: int | None) -> None:
        self.container = container
        self.id: str = container.id
        self.host_dir = host_dir
        self.space = os.path.join(host_dir, SPACE)
        self.mounted = mounted
        self.alive = alive  # the locked file descriptor, or None
        self.procs_file: str | None = None
        self.binds: list[str] = []  # where read-only host folders appear inside

    def clear_private(self) -> None:
        """Empty /tmp and /dev/shm: nothing a run wrote there reaches the next. The
        folders the engine made as mount points for read-only binds inside them (a
        virtualenv under /tmp) stay, and what is mounted on them is never touched:
        removing a mount point from the host would unmount it in the container."""
        for name, inside in PRIVATE_DIRS.items():
            mounts = {
                os.path.relpath(p, inside) for p in self.binds if _under(p, inside) and p != inside
            }
            _clear(os.path.join(self.host_dir, name), "", mounts)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _clear(folder: str, rel: str, mounts: set[str]) -> None:
    """Remove everything under `folder` (at `rel` from the private root) but the mount
    points in `mounts` and the folders that lead to them."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        path, sub = os.path.join(folder, entry), os.path.join(rel, entry) if rel else entry
        if sub in mounts:
            continue
        if any(_under(m, sub) for m in mounts):  # a folder on the way to a mount point
            _clear(path, sub, mounts)
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _cgroup_procs_file(init_pid: int) -> str | None:
    """The host path of the cgroup.procs file of the cgroup a process is in (v1 or v2)."""
    try:
        lines = Path(f"/proc/{init_pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        candidates = (
            [f"/sys/fs/cgroup{path}/cgroup.procs"]
            if controllers == ""
            else [
                f"/sys/fs/cgroup/{c}{path}/cgroup.procs"
                for c in controllers.split(",")
                if c in ("pids", "memory", "cpu", "cpuacct", "freezer")
            ]
        )
        for candidate in candidates:
            if os.access(candidate, os.R_OK):
                return candidate
    return None


def _cgroup_pids(procs_file: str) -> list[int]:
    try:
        return [int(x) for x in Path(procs_file).read_text().split()]
    except OSError:
        return []


def _uid_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _host_space(limits: Limits) -> tuple[str, bool, int | None]:
    """The box's space: a root-owned tmpfs (as root) of the disk and file limits, holding
    /tmp and /dev/shm and the runs' folders, and the locked `.alive` file."""
    host_dir = tempfile.mkdtemp(prefix="docker-", dir=launcher_dir())
    root = os.geteuid() == 0
    if root:
        libc = ctypes.CDLL(None, use_errno=True)
        opts = f"size={limits.disk_mb}m,nr_inodes={limits.files},mode=0755".encode()
        if libc.mount(b"tmpfs", host_dir.encode(), b"tmpfs", 2 | 4, opts) != 0:  # nosuid, nodev
            err = ctypes.get_errno()
            raise SandboxError(f"cannot mount the sandbox's tmpfs: {os.strerror(err)}")
    os.mkdir(os.path.join(host_dir, SPACE))
    os.chmod(os.path.join(host_dir, SPACE), 0o755 if root else 0o777)
    for name in PRIVATE_DIRS:
        os.mkdir(os.path.join(host_dir, name))
        os.chmod(os.path.join(host_dir, name), 0o1777)
    if not root:
        return host_dir, False, None
    alive = os.open(os.path.join(host_dir, SPACE, ".alive"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(alive, fcntl.LOCK_EX)
    return host_dir, True, alive


def _release_space(box: _Box) -> None:
    if box.mounted:
        ctypes.CDLL(None, use_errno=True).umount2(box.host_dir.encode(), 2)  # MNT_DETACH
    shutil.rmtree(box.host_dir, ignore_errors=True)
    if box.alive is not None:
        os.close(box.alive)
        box.alive = None


class DockerSandbox(Sandbox):
    def __init__(self, *, pool_size: int = 2, image: str | None = None) -> None:
        reason = docker_unavailable_reason()
        if reason:
            raise SandboxError(f"docker backend unavailable: {reason}")
        self.client = _client()
        self.image = image or build_image()
        self._remove_stale()
        self.pool_size = pool_size
        self._pools: dict[_PoolKey, asyncio.Queue[_Box]] = {}
        self._created: dict[_PoolKey, int] = {}
        self._all: list[_Box] = []
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "docker"

    # -- containers --------------------------------------------------------------

    def _remove_stale(self) -> None:
        """Containers (and their tmpfs) left by perfsmith processes that died."""
        for c in self.client.containers.list(all=True, filters={"label": "perfsmith.sandbox"}):
            owner = int(c.labels.get("perfsmith.owner", "0") or 0)
            if owner and base.pid_alive(owner):
                continue
            with contextlib.suppress(Exception):
                c.remove(force=True)
            host_dir = c.labels.get("perfsmith.host_dir")
            if host_dir and Path(host_dir).parent == launcher_dir():
                _release_space(_Box(c, host_dir, os.path.ismount(host_dir), None))

    def _create(self, limits: Limits, shared: tuple[str, ...]) -> _Box:
        host_dir, mounted, alive = _host_space(limits)
        volumes = {p: {"bind": p, "mode": "ro"} for p in ["/usr", *runtime_paths(), *shared]}
        _, launcher = launcher_command(inside=True)
        volumes[str(launcher)] = {"bind": f"{INSIDE_DIR}/{launcher.name}", "mode": "ro"}
        volumes[os.path.join(host_dir, SPACE)] = {"bind": "/sandbox", "mode": "rw"}
        for name, inside in PRIVATE_DIRS.items():
            volumes[os.path.join(host_dir, name)] = {"bind": inside, "mode": "rw"}
        # The main process waits for perfsmith's lock on `.alive` (root-only) and ends
        # the container when perfsmith is gone; without the lock (not root), it sleeps.
        main = (
            ["/usr/bin/flock", "-s", "/sandbox/.alive", "/usr/bin/true"]
            if alive is not None and os.path.exists("/usr/bin/flock")
            else ["/usr/bin/sleep", "infinity"]
        )
        mb = limits.memory_mb
        container = self.client.containers.create(
            self.image,
            command=main,
            init=True,
            network_mode="none",
            read_only=True,
            # init and its main process run as (capability-less) root, so the sandbox
            # user's kill(-1) cannot end the container; every run execs as that user.
            user="0:0",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges", f"seccomp={_seccomp_profile()}"],
            pids_limit=limits.processes + 4,  # + init, sleep and the launcher
            mem_limit=f"{mb + 64}m",  # + the launcher's interpreter
            memswap_limit=f"{mb + 64}m",
            nano_cpus=int((os.cpu_count() or 1) * 1e9),
            volumes=volumes,
            working_dir="/sandbox",
            labels={
                "perfsmith.sandbox": "1",
                "perfsmith.owner": str(os.getpid()),
                "perfsmith.host_dir": host_dir,
            },
            environment={"PATH": base.SAFE_PATH},
        )
        box = _Box(container, host_dir, mounted, alive)
        box.binds = [v["bind"] for v in volumes.values() if v["mode"] == "ro"]
        try:
            container.start()
            container.reload()
        except Exception:
            container.remove(force=True)
            _release_space(box)
            raise
        if os.geteuid() == 0:
            box.procs_file = _cgroup_procs_file(int(container.attrs["State"]["Pid"]))
        with self._lock:
            self._all.append(box)
        return box

    async def _acquire(self, limits: Limits, shared: tuple[str, ...] = ()) -> tuple[_PoolKey, _Box]:
        # the shared directories are the container's mounts: a pool per set of them
        key = (limits.memory_mb, limits.processes, limits.disk_mb, shared)
        pool = self._pools.setdefault(key, asyncio.Queue())
        if pool.empty() and self._created.get(key, 0) < self.pool_size:
            self._created[key] = self._created.get(key, 0) + 1
            try:
                return key, await asyncio.to_thread(self._create, limits, shared)
            except Exception as exc:
                self._created[key] -= 1
                raise SandboxError(f"cannot start a sandbox container: {exc}") from exc
        return key, await pool.get()

    async def warm(self, limits: Limits | None = None, n: int | None = None) -> None:
        """Start containers ahead of the first runs."""
        lim = limits or Limits()
        boxes = [await self._acquire(lim) for _ in range(n or self.pool_size)]
        for key, box in boxes:
            self._pools[key].put_nowait(box)

    async def close(self) -> None:
        def remove() -> None:
            for box in self._all:
                with contextlib.suppress(Exception):
                    box.container.remove(force=True)
                _release_space(box)
            self.client.close()

        await asyncio.to_thread(remove)
        self._all.clear()

    # -- runs ----------------------------------------------------------------------

    async def execute(self, command: Command) -> SandboxResult:
        c = command
        if c.stdin is not None:
            raise SandboxError("the docker backend takes input as files, not stdin")
        key, box = await self._acquire(c.limits, c.shared)
        try:
            return await asyncio.to_thread(
                self._run_sync, box, c.argv, c.files, c.limits, c.collect, c.env
            )
        finally:
            self._pools[key].put_nowait(box)

    def _exec(self, box: _Box, cmd: list[str], **kw: Any) -> tuple[int | None, bytes]:
        exec_id = self.client.api.exec_create(box.id, cmd, **kw)["Id"]
        out = self.client.api.exec_start(exec_id)
        return self.client.api.exec_inspect(exec_id).get("ExitCode"), out

    def _kill_all(self, box: _Box) -> None:
        """Kill every process of the run; init and its sleep (root) stay."""
        if box.procs_file is not None:
            # From the host, through the container's cgroup: no daemon round trip.
            for _ in range(100):
                victims = [
                    pid for pid in _cgroup_pids(box.procs_file) if _uid_of(pid) == SANDBOX_UID
                ]
                if not victims:
                    return
                for pid in victims:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.001)
            return
        # kill(-1) as the sandbox user: every process of the run, but not init or itself.
        self._exec(box, ["/bin/kill", "-9", "-1"], user=str(SANDBOX_UID))

    def _run_sync(
        self,
        box: _Box,
        command: list[str],
        files: dict[str, bytes],
        limits: Limits,
        collect: list[str],
        env: dict[str, str],
    ) -> SandboxResult:
        run_dir = f"r{next(_runs)}"
        workdir = f"/sandbox/{run_dir}"
        report = f"/sandbox/.{run_dir}.report"
        api = self.client.api
        host_run = os.path.join(box.space, run_dir)
        os.mkdir(host_run)
        host_report = os.path.join(box.space, f".{run_dir}.report")
        if box.mounted:  # the space is root's: the run's folder and report are the user's
            os.chown(host_run, SANDBOX_UID, SANDBOX_UID)
            os.close(os.open(host_report, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.chown(host_report, SANDBOX_UID, SANDBOX_UID)
        place_files(host_run, files, owner=SANDBOX_UID if box.mounted else None)
        if not box.mounted:
            for dirpath, dirs, _ in os.walk(host_run):
                for d in [dirpath, *(os.path.join(dirpath, x) for x in dirs)]:
                    os.chmod(d, 0o777)
        mb = 1024 * 1024
        cpu = max(1, int(limits.cpu_s + 0.999))
        rlimits = ",".join(
            [
                f"RLIMIT_CPU={cpu}:{cpu + 1}",
                f"RLIMIT_AS={limits.memory_mb * mb}:{limits.memory_mb * mb}",
                f"RLIMIT_FSIZE={limits.file_size_mb * mb}:{limits.file_size_mb * mb}",
                f"RLIMIT_NOFILE={limits.open_files}:{limits.open_files}",
                "RLIMIT_CORE=0:0",
            ]
        )
        environment = {
            **base.base_environment(workdir),
            **env,
            "PERFSMITH_REPORT_PATH": report,
            "PERFSMITH_RLIMITS": rlimits,
        }
        prefix, _ = launcher_command(inside=True)
        argv = [*prefix, *command]
        started = time.perf_counter()
        exec_id = api.exec_create(
            box.id, argv, workdir=workdir, environment=environment, user=str(SANDBOX_UID)
        )["Id"]
        verdict: list[tuple[Status, str]] = []

        def on_deadline() -> None:
            verdict.append((Status.TIMEOUT, f"wall-clock limit of {limits.wall_s:g} s"))
            self._kill_all(box)

        timer = threading.Timer(limits.wall_s, on_deadline)
        timer.start()
        out, err = bytearray(), bytearray()
        try:
            for chunk_out, chunk_err in api.exec_start(exec_id, stream=True, demux=True):
                for buf_, chunk in ((out, chunk_out), (err, chunk_err)):
                    if chunk:
                        buf_ += chunk
                        if len(buf_) > limits.output_bytes:
                            del buf_[limits.output_bytes + 1 :]
                            if not verdict:
                                verdict.append(
                                    (
                                        Status.OUTPUT_EXCEEDED,
                                        f"output over {limits.output_bytes} bytes",
                                    )
                                )
                                self._kill_all(box)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        code = api.exec_inspect(exec_id).get("ExitCode")
        # Leftovers (daemons, orphans) die before anything is read or the box is reused.
        self._kill_all(box)
        box.clear_private()
        ended = base.settle_exit(_read_report(host_report), code, verdict[0] if verdict else None)
        collected = collect_files(host_run, collect, limits.file_size_mb * 1024 * 1024)
        shutil.rmtree(host_run, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.unlink(host_report)
        return base.make_result(self.name, limits, ended, (out, err), wall, collected)


def _read_report(path: str) -> dict[str, float] | None:
    """The launcher's report (exit status, CPU time, peak memory), if it wrote one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return base.parse_report(f.read(4096))

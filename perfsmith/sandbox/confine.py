"""Linux confinement primitives for the process backend: a seccomp filter, namespaces,
private mounts, rlimits and a privilege drop, applied in the child between fork and exec."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import resource
import struct
from typing import NamedTuple

from perfsmith.sandbox.base import Limits

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWCGROUP, CLONE_NEWUSER, CLONE_NEWPID = 0x02000000, 0x10000000, 0x20000000
CLONE_NEWTIME = 0x00000080
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
SECCOMP_MODE_FILTER = 2

# Syscalls no candidate needs and escapes use: tracing, mounting, namespaces, kernel
# modules and keys, eBPF, perf counters, other processes' memory, io_uring (which runs
# requests outside the filter), the clocks and the I/O ports. They fail with EPERM.
_DENY_X86_64 = {
    "ptrace": 101,
    "uselib": 134,
    "ustat": 136,
    "sysfs": 139,
    "vhangup": 153,
    "pivot_root": 155,
    "_sysctl": 156,
    "adjtimex": 159,
    "chroot": 161,
    "acct": 163,
    "settimeofday": 164,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "iopl": 172,
    "ioperm": 173,
    "create_module": 174,
    "init_module": 175,
    "delete_module": 176,
    "get_kernel_syms": 177,
    "query_module": 178,
    "quotactl": 179,
    "nfsservctl": 180,
    "lookup_dcookie": 212,
    "clock_settime": 227,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "name_to_handle_at": 303,
    "open_by_handle_at": 304,
    "clock_adjtime": 305,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "kcmp": 312,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "pidfd_getfd": 438,
    "mount_setattr": 442,
    "quotactl_fd": 443,
}
_AUDIT_ARCH_X86_64 = 0xC000003E
DENIED_SYSCALLS = frozenset(_DENY_X86_64)
# personality() is denied except to turn address-space randomization off, which makes
# instruction counts repeatable (the launcher does it when asked).
PERSONALITY_NR = 135
ADDR_NO_RANDOMIZE = 0x0040000
# clone() is allowed for threads and processes, refused with any namespace flag; clone3()
# passes its flags in memory a filter cannot read, so it answers ENOSYS and the C library
# falls back to clone().
CLONE_NR, CLONE3_NR = 56, 435
NAMESPACE_FLAGS = (
    CLONE_NEWTIME
    | CLONE_NEWNS
    | CLONE_NEWCGROUP
    | CLONE_NEWUTS
    | CLONE_NEWIPC
    | CLONE_NEWUSER
    | CLONE_NEWPID
    | CLONE_NEWNET
)
ENOSYS = 38


class _Ins(NamedTuple):
    """One BPF instruction; jumps name labels (None: the next instruction)."""

    code: int
    k: int
    jt: str | None = None
    jf: str | None = None
    label: str | None = None


def seccomp_program(extra_denied: frozenset[int] = frozenset()) -> bytes | None:
    """A classic-BPF seccomp filter (struct sock_filter[]), or None off x86-64: denied
    numbers, and the argument checks of personality() and clone(), jump forward to shared
    returns."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    ld_abs, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, kill = 0x7FFF0000, 0x80000000
    deny, nosys = 0x00050000 | 1, 0x00050000 | ENOSYS  # ERRNO(EPERM), ERRNO(ENOSYS)
    program = [
        _Ins(ld_abs, 4),  # seccomp_data.arch
        _Ins(jeq, _AUDIT_ARCH_X86_64, jf="KILL"),
        _Ins(ld_abs, 0),  # seccomp_data.nr
        _Ins(jge, 0x40000000, jt="DENY"),  # the x32 ABI
        _Ins(jeq, PERSONALITY_NR, jt="PERSONALITY"),
        _Ins(jeq, CLONE_NR, jt="CLONE"),
        _Ins(jeq, CLONE3_NR, jt="NOSYS"),
        *(_Ins(jeq, nr, jt="DENY") for nr in sorted(set(_DENY_X86_64.values()) | extra_denied)),
        _Ins(ret, allow),
        _Ins(ld_abs, 16, label="PERSONALITY"),  # args[0], low 32 bits
        _Ins(jeq, ADDR_NO_RANDOMIZE, jt="ALLOW", jf="DENY"),
        _Ins(ld_abs, 16, label="CLONE"),  # clone's flags, low 32 bits
        _Ins(jset, NAMESPACE_FLAGS, jt="DENY", jf="ALLOW"),
        _Ins(ret, allow, label="ALLOW"),
        _Ins(ret, deny, label="DENY"),
        _Ins(ret, nosys, label="NOSYS"),
        _Ins(ret, kill, label="KILL"),
    ]
    labels = {ins.label: i for i, ins in enumerate(program) if ins.label}
    out = []
    for i, ins in enumerate(program):
        t = labels[ins.jt] - i - 1 if ins.jt else 0
        f = labels[ins.jf] - i - 1 if ins.jf else 0
        if not (0 <= t < 256 and 0 <= f < 256):
            raise ValueError("seccomp program: a jump out of range")
        out.append(struct.pack("HBBI", ins.code, t, f, ins.k))
    return b"".join(out)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def install_seccomp(program: bytes) -> None:
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = _libc()
    fprog = SockFprog(len(program) // 8, program)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp")


def hidden_parent(path: str) -> str | None:
    """The top-most directory above `path` that other users cannot enter (e.g. /root)."""
    parts = os.path.abspath(path).split("/")[1:]
    for i in range(1, len(parts)):
        top = "/" + "/".join(parts[:i])
        try:
            if not os.stat(top).st_mode & 0o001:
                return top
        except OSError:
            return None
    return None


PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


MS_RDONLY, MS_NOEXEC, MS_REMOUNT = 1, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_KEPT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}


def mount_points() -> list[tuple[bytes, int]]:
    """Every mount point of this mount namespace with the flags a bind remount must keep
    (from /proc/self/mountinfo: field 5 is the path, octal-escaped; field 6 its options)."""
    found = []
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f.read().splitlines():
            fields = line.split(b" ")
            path = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
            options = fields[5].decode("ascii", "replace").split(",")
            flags = 0
            for opt in options:
                flags |= _KEPT_FLAGS.get(opt, 0)
            if "relatime" not in options and "noatime" not in options:
                flags |= MS_STRICTATIME
            found.append((path, flags))
    return found


def read_only_everywhere() -> None:
    """Remount every mount point of this (private) namespace but /proc read-only: no host
    directory stays writable (/run/lock, a world-writable cache), whatever its permissions say."""
    libc = _libc()
    for path, flags in mount_points():
        # /proc stays as it is: its writable files are per process (bwrap writes its uid
        # map there); the namespace's init mounts its own over it.
        if path == b"/proc" or path.startswith(b"/proc/"):
            continue
        libc.mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None)


def private_namespaces(
    tmp_mb: int, inodes: int, expose: list[str], stage: str, *, pid_namespace: bool = True
) -> None:
    """New network (empty), IPC, UTS, mount and PID namespaces (the PID namespace is the
    children's: the launcher's first child is its init), every mount read-only, and
    private /tmp, /var/tmp and /dev/shm (root only), each of `tmp_mb` and `inodes`. Each
    directory in `expose` stays visible (read-only) at its own path even where it lies
    under one of those (a virtualenv in /tmp) or under a directory others cannot enter
    (a runtime under /root, whose other contents become an empty tmpfs). `stage` is an
    empty directory outside those, used to carry the mounts across."""
    libc = _libc()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    flags |= CLONE_NEWPID if pid_namespace else 0
    _check(libc.unshare(flags), "unshare")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    read_only_everywhere()
    private = [d for d in PRIVATE_DIRS if os.path.isdir(d)]
    hidden = {p: hidden_parent(p) for p in expose}
    keep = [p for p in expose if hidden[p] is not None or any(_under(p, d) for d in private)]
    if keep:
        _check(
            libc.mount(b"tmpfs", stage.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=700"),
            "stage",
        )
    staged: list[tuple[str, str]] = []
    for i, path in enumerate(keep):
        slot = f"{stage}/{i}"
        os.mkdir(slot)
        _check(libc.mount(path.encode(), slot.encode(), None, MS_BIND | MS_REC, None), "stage")
        staged.append((path, slot))
    opts = f"size={tmp_mb}m,nr_inodes={inodes},mode=1777".encode()
    for target in private:
        _check(libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts), "tmpfs")
    for top in sorted({t for t in hidden.values() if t is not None}):
        os.makedirs(top, exist_ok=True)  # gone when it was under a private /tmp
        _check(
            libc.mount(b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755"), "hide"
        )
    for path, slot in staged:
        os.makedirs(path, exist_ok=True)
        _check(libc.mount(slot.encode(), path.encode(), None, MS_BIND | MS_REC, None), "expose")
    if keep:
        libc.umount2(stage.encode(), MNT_DETACH)


def bind_writable(source: str, target: str) -> None:
    """Show `source` at `target`, writable: the bind of a directory on a read-only mount
    starts read-only."""
    libc = _libc()
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND, None), "workdir")
    _check(
        libc.mount(None, target.encode(), None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, None),
        "workdir writable",
    )


def bind_workdir(workdir: str, fixed: str) -> None:
    """Show the run's working directory at a fixed path (inside the private /tmp),
    writable, and move there."""
    os.makedirs(fixed, exist_ok=True)
    bind_writable(workdir, fixed)
    os.chdir(fixed)


def apply_limits(limits: Limits, *, per_uid_processes: bool) -> None:
    mb = 1024 * 1024
    cpu = max(1, int(limits.cpu_s + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if per_uid_processes:
        # RLIMIT_NPROC counts every process of the real uid: exact when each run has its own.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))


def drop_privileges(uid: int) -> None:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def die_with_parent() -> None:
    """SIGKILL when the parent dies. A uid change clears it: set it after any."""
    import signal

    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (kill(-1) as that uid: the kernel walks them all)."""
    import signal

    pid = os.fork()
    if pid == 0:  # child: only async-signal-safe syscalls until _exit
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):  # a fork racing the first pass is caught by the next
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)

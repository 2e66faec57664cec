"""Linux confinement primitives for the process backend: a seccomp filter, namespaces,
private mounts, rlimits and a privilege drop, applied in the child between fork and exec."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import struct

from perfsmith.sandbox.base import Limits

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
SECCOMP_MODE_FILTER = 2

# Syscalls no candidate needs and escapes use: tracing, mounting, namespaces, kernel
# modules and keys, eBPF, perf counters, other processes' memory. They fail with EPERM.
_DENY_X86_64 = {
    "ptrace": 101,
    "pivot_root": 155,
    "chroot": 161,
    "acct": 163,
    "mount": 165,
    "umount2": 166,
    "swapon": 167,
    "swapoff": 168,
    "reboot": 169,
    "sethostname": 170,
    "setdomainname": 171,
    "init_module": 175,
    "delete_module": 176,
    "quotactl": 179,
    "kexec_load": 246,
    "add_key": 248,
    "request_key": 249,
    "keyctl": 250,
    "unshare": 272,
    "perf_event_open": 298,
    "open_by_handle_at": 304,
    "setns": 308,
    "process_vm_readv": 310,
    "process_vm_writev": 311,
    "finit_module": 313,
    "kexec_file_load": 320,
    "bpf": 321,
    "userfaultfd": 323,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
}
_AUDIT_ARCH_X86_64 = 0xC000003E
DENIED_SYSCALLS = frozenset(_DENY_X86_64)
# personality() is denied except to turn address-space randomization off, which makes
# instruction counts repeatable (the launcher does it when asked).
PERSONALITY_NR = 135
ADDR_NO_RANDOMIZE = 0x0040000


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter (struct sock_filter[]), or None off x86-64.

    Layout (BPF jumps only go forward):
      0 load arch; 1 x86-64? else 2 kill; 3 load nr; 4 x32 ABI -> DENY;
      5 personality -> PERS; 6.. each denied nr -> DENY; ALLOW; DENY;
      PERS: load args[0]; == ADDR_NO_RANDOMIZE ? allow : deny
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny, kill = 0x7FFF0000, 0x00050000 | 1, 0x80000000  # ALLOW, ERRNO(EPERM), KILL
    nrs = sorted(_DENY_X86_64.values())
    m = len(nrs)
    prog = [
        (ld_abs, 0, 0, 4),  # seccomp_data.arch
        (jeq, 1, 0, _AUDIT_ARCH_X86_64),
        (ret, 0, 0, kill),  # another ABI: refuse outright
        (ld_abs, 0, 0, 0),  # seccomp_data.nr
        (jge, m + 2, 0, 0x40000000),  # the x32 ABI: deny
        (jeq, m + 2, 0, PERSONALITY_NR),  # personality: check its argument
    ]
    for i, nr in enumerate(nrs):
        prog.append((jeq, m - i, 0, nr))  # to DENY
    prog.append((ret, 0, 0, allow))
    prog.append((ret, 0, 0, deny))
    prog.append((ld_abs, 0, 0, 16))  # seccomp_data.args[0], low 32 bits
    prog.append((jeq, 0, 1, ADDR_NO_RANDOMIZE))
    prog.append((ret, 0, 0, allow))
    prog.append((ret, 0, 0, deny))
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


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


def private_namespaces(tmp_mb: int, expose: list[str], stage: str) -> None:
    """New network (empty), IPC, UTS and mount namespaces with private /tmp, /var/tmp and
    /dev/shm (root only). Each directory in `expose` stays visible at its own path even
    where it lies under one of those (a virtualenv in /tmp) or under a directory others
    cannot enter (a runtime under /root, whose other contents become an empty tmpfs).
    `stage` is an empty directory outside those, used to carry the mounts across."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
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
    opts = f"size={tmp_mb}m,mode=1777".encode()
    for target in private:
        _check(libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, opts), "tmpfs")
    for top in sorted({t for t in hidden.values() if t is not None}):
        _check(
            libc.mount(b"tmpfs", top.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=755"), "hide"
        )
    for path, slot in staged:
        os.makedirs(path, exist_ok=True)
        _check(libc.mount(slot.encode(), path.encode(), None, MS_BIND | MS_REC, None), "expose")
    if keep:
        libc.umount2(stage.encode(), MNT_DETACH)


def bind_workdir(workdir: str, fixed: str) -> None:
    """Show the run's working directory at a fixed path (inside the private /tmp) and
    move there."""
    os.makedirs(fixed, exist_ok=True)
    _check(_libc().mount(workdir.encode(), fixed.encode(), None, MS_BIND, None), "workdir")
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

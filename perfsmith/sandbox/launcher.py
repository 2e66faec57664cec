"""Runs inside a sandbox (bubblewrap, docker) as the parent of the untrusted command and
reports the command's exit status and resource usage (wait4) on a file descriptor the
command cannot reach. Standard library only: it runs with `python -I -S`. The same
program as launcher.c (used where no C compiler is found), confined mode included: with
PERFSMITH_UID its child is the init of a new PID namespace that starts the command as that
uid, reaps every orphan, reports, and ends the namespace when the command ends."""

import contextlib
import ctypes
import os
import select
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP = 1, 4, 38, 22
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
libc = ctypes.CDLL(None, use_errno=True)


def fail(what: str) -> None:
    err = ctypes.get_errno()
    os.write(2, f"sandbox: {what}: {os.strerror(err)}\n".encode())
    os._exit(126)


def lower_limits(spec: str) -> None:
    import resource

    for item in spec.split(","):  # "NAME=soft:hard,...", lowered in the child only
        name, value = item.split("=")
        soft, hard = value.split(":")
        resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))


def install_seccomp(fd: int) -> None:
    prog = b""
    while chunk := os.read(fd, 65536):
        prog += chunk
    os.close(fd)

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    fprog = SockFprog(len(prog) // 8, prog)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("no_new_privs")
    if libc.prctl(PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0) != 0:
        fail("seccomp")


def exec_command(argv: list[str]) -> None:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"sandbox: cannot run {argv[0]!r}: {exc.strerror}\n".encode())
        os._exit(127)


def report(report_fd: int, report_path: str, status: int, usage: object) -> None:
    # "status cpu_s max_rss_kb": plain text, since importing json would double start-up.
    cpu = usage.ru_utime + usage.ru_stime  # type: ignore[attr-defined]
    data = f"{status} {cpu!r} {usage.ru_maxrss}".encode()  # type: ignore[attr-defined]
    if report_path:  # docker: no inherited fds
        fd = os.open(report_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(fd, data)
        os.close(fd)
    elif report_fd >= 0:
        os.write(report_fd, data)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def init_main(
    argv: list[str],
    uid: int,
    seccomp_fd: int,
    report_fd: int,
    alive_fd: int,
    limits: str,
    fixed_layout: bool,
) -> int:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    ready = select.select([alive_fd], [], [], 0)[0]
    if ready and os.read(alive_fd, 1) == b"":  # the launcher is already gone
        os._exit(126)
    os.close(alive_fd)
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        fail("mount /proc")
    pid = os.fork()
    if pid == 0:
        os.close(report_fd)
        if limits:
            lower_limits(limits)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        except OSError:
            fail("drop privileges")
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after the uid change
        if os.getppid() != 1:
            os._exit(126)
        if fixed_layout:
            libc.personality(0x0040000)
        if seccomp_fd >= 0:
            install_seccomp(seccomp_fd)
        exec_command(argv)
    if seccomp_fd >= 0:
        os.close(seccomp_fd)
    command: tuple[int, object] | None = None
    while True:
        try:
            got, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            break
        if got == pid:
            command = (status, usage)
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # every process left in the namespace
    if command is None:
        return 126
    report(report_fd, "", command[0], command[1])
    return exit_code(command[0])


def main() -> None:
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    report_fd = int(os.environ.pop("PERFSMITH_REPORT_FD", "-1"))
    report_path = os.environ.pop("PERFSMITH_REPORT_PATH", "")
    limits = os.environ.pop("PERFSMITH_RLIMITS", "")
    fixed_layout = os.environ.pop("PERFSMITH_NO_ASLR", "") == "1"
    uid_s = os.environ.pop("PERFSMITH_UID", "")
    seccomp_fd = int(os.environ.pop("PERFSMITH_SECCOMP_FD", "-1"))
    argv = sys.argv[1:]
    if uid_s:
        uid = int(uid_s)
        if uid == 0:
            os.write(2, b"sandbox: PERFSMITH_UID must not be root\n")
            os._exit(126)
        alive_r, alive_w = os.pipe()
        init = os.fork()
        if init == 0:
            os.close(alive_w)
            os._exit(init_main(argv, uid, seccomp_fd, report_fd, alive_r, limits, fixed_layout))
        os.close(alive_r)
        for fd in (seccomp_fd, report_fd):
            if fd >= 0:
                os.close(fd)
        _, status = os.waitpid(init, 0)
        os._exit(exit_code(status))
    pid = os.fork()
    if pid == 0:
        if report_fd >= 0:
            os.close(report_fd)
        if limits:
            lower_limits(limits)
        if fixed_layout:  # repeatable instruction counts: no address randomization
            libc.personality(0x0040000)
        exec_command(argv)
    _, status, usage = os.wait4(pid, 0)
    report(report_fd, report_path, status, usage)
    os._exit(exit_code(status))


if __name__ == "__main__":
    main()

"""Runs inside a sandbox (bubblewrap, docker) as the parent of the untrusted command and
reports the command's exit status and resource usage (wait4) on a file descriptor the
command cannot reach. Standard library only: it runs with `python -I -S`."""

import os
import sys


def main() -> None:
    report_fd = int(os.environ.pop("PERFSMITH_REPORT_FD", "-1"))
    report_path = os.environ.pop("PERFSMITH_REPORT_PATH", "")
    limits = os.environ.pop("PERFSMITH_RLIMITS", "")
    fixed_layout = os.environ.pop("PERFSMITH_NO_ASLR", "") == "1"
    argv = sys.argv[1:]
    pid = os.fork()
    if pid == 0:
        if report_fd >= 0:
            os.close(report_fd)
        if limits:  # "NAME=soft:hard,...", lowered in the child only
            import resource

            for item in limits.split(","):
                name, value = item.split("=")
                soft, hard = value.split(":")
                resource.setrlimit(getattr(resource, name), (int(soft), int(hard)))
        if fixed_layout:  # repeatable instruction counts: no address randomization
            import ctypes

            ctypes.CDLL(None).personality(0x0040000)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"sandbox: cannot run {argv[0]!r}: {exc.strerror}\n".encode())
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    # "status cpu_s max_rss_kb": plain text, since importing json would double start-up.
    data = f"{status} {usage.ru_utime + usage.ru_stime!r} {usage.ru_maxrss}".encode()
    if report_path:  # docker: no inherited fds; a root-only file the command cannot write
        with open(report_path, "wb") as f:
            f.write(data)
    else:
        os.write(report_fd, data)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()

"""Hostile payloads: LLM-written code that tries to break out, hog the machine or lie.

Each payload prints `ESCAPED: <what>` if a forbidden action worked. `TOKEN` marks every
file and process a payload creates, so the tests can prove none survives on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TOKEN = "perfsmith-hostile-7f3a"

COMMON = f"""
import ctypes, os, signal, socket, sys, time
TOKEN = {TOKEN!r}
def escaped(what):
    print("ESCAPED:", what, flush=True)
def attempt(what, fn):
    try:
        fn()
    except Exception:
        return
    escaped(what)
libc = ctypes.CDLL(None, use_errno=True)
"""


@dataclass(frozen=True)
class Payload:
    name: str
    code: str
    statuses: frozenset[str]  # acceptable final statuses
    limits: dict[str, Any] = field(default_factory=dict)
    collect: tuple[str, ...] = ()
    expect_stdout: str | None = None  # a marker that must appear (proves it ran)


def p(name: str, code: str, *statuses: str, **kw: Any) -> Payload:
    return Payload(name, COMMON + code, frozenset(statuses), **kw)


DONE = "print('PAYLOAD-DONE', flush=True)\n"

# Every directory a run can create a file in, found by trying: the mount points, the usual
# shared places, and a walk of the tree (two levels, /proc, /sys and /usr aside).
WRITABLE = """
def writable_dirs():
    seen, found = set(), []
    dirs = []
    for line in open('/proc/self/mountinfo'):
        dirs.append(line.split()[4].replace('\\\\040', ' '))
    for top in os.listdir('/'):
        base = '/' + top
        if base in ('/proc', '/sys', '/usr') or not os.path.isdir(base):
            continue
        dirs.append(base)
        try:
            for sub in os.listdir(base):
                path = os.path.join(base, sub)
                if os.path.isdir(path) and not os.path.islink(path):
                    dirs.append(path)
                    try:
                        dirs += [os.path.join(path, x) for x in os.listdir(path)][:200]
                    except OSError:
                        pass
        except OSError:
            pass
    dirs += ['/run/lock', '/var/lock', '/dev/shm', '/dev/mqueue', '/tmp', '/var/tmp', '.']
    for d in dirs:
        real = os.path.realpath(d)
        if real in seen or real.startswith(('/proc', '/sys')) or not os.path.isdir(real):
            continue
        seen.add(real)
        probe = os.path.join(real, TOKEN + '-probe')
        try:
            with open(probe, 'w') as f:
                f.write('x')
            os.unlink(probe)
            found.append(real)
        except OSError:
            pass
    return found


def private(d):
    here = os.path.realpath('.')
    return any(d == top or d.startswith(top + '/') for top in ('/tmp', '/var/tmp', '/dev/shm', here))
"""


PAYLOADS: list[Payload] = [
    p(
        "fork_bomb",
        "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "timeout",
        "error",
        "killed",
        "memory_exceeded",
        limits={"wall_s": 2},
    ),
    p(
        "memory_bomb",
        "x = bytearray(4 * 1024**3)\nescaped('allocated 4 GB')\n",
        "memory_exceeded",
        limits={"memory_mb": 256},
    ),
    p(
        "memory_growth",
        "chunks = []\nwhile True:\n    chunks.append(b'x' * 10**6)\n",
        "memory_exceeded",
        limits={"memory_mb": 256, "wall_s": 10},
    ),
    p("cpu_spin", "while True:\n    pass\n", "timeout", limits={"cpu_s": 1, "wall_s": 5}),
    p("sleep_forever", "time.sleep(10**6)\n", "timeout", limits={"wall_s": 1}),
    p(
        "ignore_sigterm",
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(10**6)\n",
        "timeout",
        limits={"wall_s": 1},
    ),
    p(
        "connect_host_loopback",
        "port = int(open('port').read())\n"
        "attempt('connected to the host loopback', "
        "lambda: socket.create_connection(('127.0.0.1', port), timeout=1))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "network_interfaces",
        "names = [n for _, n in socket.if_nameindex()]\n"
        "if [n for n in names if n != 'lo']: escaped('interfaces ' + repr(names))\n"
        "routes = open('/proc/net/route').read().splitlines()[1:]\n"
        "if routes: escaped('routes ' + repr(routes))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "dns_lookup",
        "attempt('resolved a name', lambda: socket.getaddrinfo('perfsmith-sandbox-test.invalid', 80))\n"
        + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "udp_out",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    s.sendto(b'x', ('127.0.0.1', int(open('port').read())))\nexcept OSError:\n"
        "    pass\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),  # the host listener must hear nothing
    p(
        "write_outside",
        "for d in ('/tmp', '/var/tmp', '/dev/shm', '/root', '/etc', '/usr', '..', '/'):\n"
        "    path = os.path.join(d, TOKEN + '-escape')\n"
        "    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "read_root",
        "try:\n    found = os.listdir('/root')\nexcept OSError:\n    found = []\n"
        "visible = [f for f in found if f not in ('.pyenv',)]\n"
        "if visible: escaped('listed /root: ' + repr(visible))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "read_shadow",
        "attempt('read /etc/shadow', lambda: open('/etc/shadow').read())\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "env_secrets",
        "leaked = [k for k in os.environ if 'SECRET' in k or 'TOKEN' in k or 'KEY' in k]\n"
        "if leaked: escaped('environment ' + repr(leaked))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "huge_stdout",
        "while True:\n    sys.stdout.write('x' * 65536)\n",
        "output_exceeded",
        limits={"output_bytes": 100_000},
    ),
    p(
        "huge_single_line",
        "print('y' * 50_000_000)\n",
        "output_exceeded",
        limits={"output_bytes": 100_000},
    ),
    p(
        "huge_stderr",
        "while True:\n    sys.stderr.write('e' * 65536)\n",
        "output_exceeded",
        limits={"output_bytes": 100_000},
    ),
    p(
        "many_files",
        "for i in range(10**7):\n    open(f'f{i}', 'w').write('x' * 4096)\n",
        "output_exceeded",
        "timeout",
        "error",
        limits={"disk_mb": 32, "wall_s": 10},
    ),
    p(
        "fill_disk",
        "with open('big', 'wb') as f:\n    while True:\n        f.write(b'z' * 2**20)\n",
        "output_exceeded",
        "error",
        limits={"disk_mb": 64, "file_size_mb": 32},
    ),
    p(
        "daemon_outlives",
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        sys.argv[0] = TOKEN\n        time.sleep(10**6)\n    os._exit(0)\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "orphan_holds_pipes",
        "if os.fork() == 0:\n    time.sleep(10**6)\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
        limits={"wall_s": 5},
    ),
    p(
        "threads_after_exit",
        "import threading\n"
        "for _ in range(4):\n    threading.Thread(target=lambda: [None for _ in iter(int, 1)]).start()\n"
        + DONE
        + "os._exit(0)\n",
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "kill_parent",
        "attempt('killed the host test process', lambda: os.kill(int(open('hostpid').read()), 9))\n"
        "try:\n    os.kill(os.getppid(), signal.SIGKILL)  # its own jailer at most\nexcept OSError:\n"
        "    pass\n"
        # PID 1 is the run's own init (a PID namespace): refused, or ignored by the kernel
        "try:\n    os.kill(1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
        "print('PAYLOAD-DONE', flush=True)\n"
        "os.kill(-1, signal.SIGKILL)  # allowed on its own processes; the host must survive\n",
        "ok",
        "killed",
        "error",
        "memory_exceeded",
    ),
    p(
        "ptrace",
        "r = libc.ptrace(16, os.getppid(), 0, 0)\n"  # PTRACE_ATTACH
        "if r == 0: escaped('ptrace attach')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "change_uid",
        "attempt('became root', lambda: os.setuid(0))\n"
        "attempt('changed gid', lambda: os.setgid(0))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "proc_of_others",
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit() and int(pid) != os.getpid():\n"
        "        try:\n            data = open(f'/proc/{pid}/environ', 'rb').read()\n"
        "        except OSError:\n            continue\n"
        "        if data and b'PERFSMITH_TEST_SECRET' in data:\n"
        "            escaped('read environ of ' + pid)\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "many_fds",
        "fds = []\nwhile True:\n    fds.append(os.open('/dev/null', os.O_RDONLY))\n",
        "error",
        limits={"open_files": 64},
    ),
    p(
        "symlink_escape",
        "os.symlink('/etc/passwd', 'out.txt')\nos.symlink('/', 'rootlink')\n" + DONE,
        "ok",
        collect=("out.txt", "rootlink/etc/passwd"),
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "binary_garbage",
        "sys.stdout.buffer.write(bytes(range(256)) * 64)\nsys.stdout.flush()\n",
        "ok",
    ),
    p(
        "mount",
        "r = libc.mount(b'none', b'/sandbox', b'tmpfs', 0, None)\n"
        "if r == 0: escaped('mounted')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "unshare",
        "r = libc.unshare(0x10000000)\nif r == 0: escaped('new user namespace')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "kernel_module",
        "r = libc.init_module(None, 0, b'')\nif r == 0: escaped('loaded a module')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "hostname",
        "r = libc.sethostname(b'pwned', 5)\n"
        "attempt('wrote /proc/sys', lambda: open('/proc/sys/kernel/hostname', 'w').write('pwned'))\n"
        + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "reboot",
        "r = libc.reboot(0x01234567)\nif r == 0: escaped('reboot')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "raw_devices",
        "for dev in ('/dev/mem', '/dev/kmem', '/dev/sda', '/dev/vda', '/dev/port'):\n"
        "    attempt('opened ' + dev, lambda: open(dev, 'rb').read(1))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p("core_dump", "os.abort()\n", "killed"),
    p(
        "raise_limits",
        "import resource\n"
        "attempt('raised CPU limit', lambda: resource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6)))\n"
        + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "keyring",
        "r = libc.syscall(248, b'user', b'k', b'v', 1, -1)\n"  # add_key
        "if r >= 0: escaped('added a key')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "personality",
        "r = libc.personality(0x0400000)\n"  # READ_IMPLIES_EXEC: only ADDR_NO_RANDOMIZE passes
        "if r != -1: escaped('changed the execution domain')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "bpf",
        "r = libc.syscall(321, 0, None, 0)\nif r >= 0: escaped('bpf')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    # -- no state shared with the host or later runs -------------------------------------
    p(
        "writable_host_dirs",
        WRITABLE + "for d in writable_dirs():\n"
        "    if not private(d):\n        escaped(f'wrote into {d}')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
        limits={"wall_s": 20, "cpu_s": 20},
    ),
    p(
        "run_lock_cache",
        "for d in ('/run/lock', '/var/lock', '/run', '/var/crash', '/var/mail', '/var/spool',"
        " '/var/cache', '/var/lib', '/home', '/opt', '/srv', '/mnt', '/media', '/etc'):\n"
        "    def put(d=d):\n"
        "        with open(os.path.join(d, TOKEN + '-cache'), 'w') as f:\n"
        "            f.write('cached')\n"
        "        os.unlink(os.path.join(d, TOKEN + '-cache'))\n"
        "    attempt(f'cached a result in {d}', put)\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    # -- the supervisor's report ----------------------------------------------------------
    p(
        "forge_report_by_memory",
        "def forge():\n"
        "    with open(f'/proc/{os.getppid()}/mem', 'r+b') as f:\n"
        "        f.seek(0x400000)\n        f.write(b'0 0.0 0')\n"
        "attempt('wrote into its supervisor\\'s memory', forge)\n"
        "attempt('read its supervisor\\'s memory', "
        "lambda: open(f'/proc/{os.getppid()}/mem', 'rb').read(1))\n"
        "ctypes.string_at(0)  # then crash: the verdict must say so\n",
        "killed",
    ),
    p(
        "forge_report_by_fd",
        "for fd in range(3, 256):\n"
        "    try:\n        os.write(fd, b'0 0.0 1')\n    except OSError:\n        pass\n"
        # a daemon keeps rewriting any report file it can reach after the command crashes
        "reports = [os.path.join('..', n) for n in os.listdir('..') if n.endswith('.report')]\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    for _ in range(400):\n"
        "        for r in reports:\n"
        "            try:\n                open(r, 'w').write('0 0.0 1')\n"
        "            except OSError:\n                pass\n"
        "        time.sleep(0.005)\n"
        "    os._exit(0)\n"
        "time.sleep(0.05)\n"
        "ctypes.string_at(0)\n",
        "killed",
    ),
    # -- other processes ------------------------------------------------------------------
    p(
        "pid_namespace",
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "if len(pids) > 8: escaped(f'sees {len(pids)} processes')\n"
        "for pid in pids:\n"
        "    try:\n        cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n"
        "    except OSError:\n        continue\n"
        "    if b'pytest' in cmd: escaped('read the host test run\\'s command line')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "signal_host_process",
        "attempt('signalled the host test process', "
        "lambda: os.kill(int(open('hostpid').read()), 0))\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    # -- namespaces and io_uring ----------------------------------------------------------
    p(
        "clone_new_namespaces",
        "flags = 0x10000000 | 0x00020000 | 0x40000000 | signal.SIGCHLD\n"
        "pid = libc.syscall(56, flags, 0, 0, 0, 0)\n"
        "if pid == 0:\n    os._exit(0)\n"
        "if pid > 0:\n    os.waitpid(pid, 0)\n    escaped('cloned into new namespaces')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "clone3_new_namespaces",
        "import struct\n"
        "args = struct.pack('QQQQQQQQ', 0x10000000 | 0x20000000, 0, 0, 0, signal.SIGCHLD, 0, 0, 0)\n"
        "buf = ctypes.create_string_buffer(args, len(args))\n"
        "pid = libc.syscall(435, buf, len(args))\n"
        "if pid == 0:\n    os._exit(0)\n"
        "if pid > 0:\n    os.waitpid(pid, 0)\n    escaped('clone3 into new namespaces')\n"
        "import threading\nt = threading.Thread(target=lambda: None)\nt.start()\nt.join()\n"
        "child = os.fork()\nif child == 0:\n    os._exit(0)\nos.waitpid(child, 0)\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "io_uring_setup",
        "params = ctypes.create_string_buffer(120)\n"
        "fd = libc.syscall(425, 4, params)\n"
        "if fd >= 0: escaped('set up an io_uring')\n" + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    p(
        "io_uring_register",
        "r1 = libc.syscall(427, 0, 0, None, 0)\nr2 = libc.syscall(426, 0, 0, 0, 0, None, 0)\n"
        "if ctypes.get_errno() != 1: escaped(f'io_uring calls reached the kernel ({ctypes.get_errno()})')\n"
        + DONE,
        "ok",
        expect_stdout="PAYLOAD-DONE",
    ),
    # -- file counts (empty files: no bytes for a disk limit to see) ----------------------
    p(
        "inode_bomb",
        "for i in range(150_000):\n    open(f'e{i}', 'w').close()\nescaped('made 150,000 files')\n",
        "output_exceeded",
        "error",
        "timeout",
        limits={"wall_s": 20, "cpu_s": 20, "files": 5000},
    ),
    p(
        "inode_bomb_tmp",
        "os.makedirs('/tmp/d', exist_ok=True)\n"
        "for i in range(150_000):\n    os.mkdir(f'/tmp/d/{i}')\n"
        "escaped('made 150,000 folders in /tmp')\n",
        "output_exceeded",
        "error",
        "timeout",
        limits={"wall_s": 20, "cpu_s": 20, "files": 5000},
    ),
]

# Writes a marker into every writable place (first run) or reports the markers it finds
# (second run): nothing the first run wrote may reach the second.
PLANT = (
    COMMON
    + WRITABLE
    + """
import sys
planted = []
for d in writable_dirs():
    try:
        with open(os.path.join(d, TOKEN + '-planted'), 'w') as f:
            f.write('x')
        planted.append(d)
    except OSError:
        pass
print('PLANTED', len(planted), planted, flush=True)
"""
)
FIND = (
    COMMON
    + WRITABLE
    + """
found = []
for d in writable_dirs() + ['/tmp', '/var/tmp', '/dev/shm', '/run/lock', '..', '.']:
    if os.path.exists(os.path.join(d, TOKEN + '-planted')):
        found.append(d)
if found:
    escaped(f'found what an earlier run left in {found}')
print('PAYLOAD-DONE', flush=True)
"""
)

"""Every hostile payload, on every backend: contained, with the right status, and the host
unharmed (no file written outside, no process left, no connection made)."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfsmith.sandbox.base import Limits, Sandbox, run_python
from tests.sandbox.payloads import FIND, PAYLOADS, PLANT, TOKEN, Payload


class Listener:
    """A TCP and a UDP socket on the host's loopback that must hear nothing but the test's
    own markers."""

    def __init__(self) -> None:
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.heard: list[str] = []
        self._markers: set[tuple[str, object]] = set()
        self._marked = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.tcp, self.udp], [], [], 0.05)
            for sock in ready:
                if sock is self.tcp:
                    conn, peer = sock.accept()
                    conn.close()
                    self._note("tcp", peer[1])
                else:
                    data, _ = sock.recvfrom(64)
                    self._note("udp", data)

    def _note(self, kind: str, what: object) -> None:
        with self._marked:
            if (kind, what) in self._markers:
                self._markers.discard((kind, what))
                self._marked.notify_all()
            else:
                self.heard.append(kind)

    def drain(self) -> None:
        """Return once everything sent before this call has been heard: a marker sent now
        on each socket arrives after it (a listen queue and a datagram queue are FIFO)."""
        marker = os.urandom(8)
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            with self._marked:
                self._markers |= {("tcp", tcp.getsockname()[1]), ("udp", marker)}
            tcp.connect(("127.0.0.1", self.port))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.sendto(marker, ("127.0.0.1", self.port))
            with self._marked:
                assert self._marked.wait_for(lambda: not self._markers, timeout=30)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.tcp.close()
        self.udp.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()
    assert lst.heard == [], f"a sandbox reached the host: {lst.heard}"


def token_processes() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if TOKEN.encode() in cmdline and str(os.getpid()) != pid:
            found.append(pid)
    return found


def token_files() -> list[str]:
    found = []
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/root", "/etc", "/usr", "/", str(Path.cwd())):
        try:
            found += [os.path.join(d, f) for f in os.listdir(d) if TOKEN in f]
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def _host_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFSMITH_TEST_SECRET", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")


@pytest.mark.parametrize("payload", PAYLOADS, ids=[p.name for p in PAYLOADS])
async def test_payload_is_contained(sandbox: Sandbox, payload: Payload, listener: Listener) -> None:
    limits = Limits(**{"wall_s": 5.0, "cpu_s": 5.0, "memory_mb": 512, **payload.limits})
    hostname = socket.gethostname()
    result = await run_python(
        sandbox,
        payload.code,
        limits=limits,
        files={"port": str(listener.port).encode(), "hostpid": str(os.getpid()).encode()},
        collect=payload.collect,
    )
    detail = (
        f"{payload.name} on {sandbox.name}: {result.status} {result.reason} "
        f"stdout={result.stdout[-300:]!r} stderr={result.stderr[-500:]!r}"
    )
    assert result.backend == sandbox.name
    assert result.status.value in payload.statuses, detail
    assert "ESCAPED" not in result.stdout, detail
    if payload.expect_stdout:
        assert payload.expect_stdout in result.stdout, detail
    if payload.collect:
        assert result.files == {}, detail  # links out of the sandbox are never followed
    assert len(result.stdout) <= limits.output_bytes and len(result.stderr) <= limits.output_bytes
    assert result.wall_s < limits.wall_s + 3, detail
    assert token_processes() == [], f"{payload.name} left processes behind"
    assert token_files() == [], f"{payload.name} wrote outside the sandbox"
    assert socket.gethostname() == hostname
    await asyncio.to_thread(listener.drain)  # anything that arrived is heard by now
    assert listener.heard == [], f"{payload.name} reached the host's loopback"


async def test_nothing_a_run_writes_reaches_the_next(sandbox: Sandbox) -> None:
    """Every place a run can write is private to it: markers planted in all of them by one
    run (SysV shared memory too) are gone for the next run on the same backend."""
    plant = await run_python(
        sandbox,
        PLANT + "try:\n    libc.shmget(0x7F3A, 4096, 0o1666)\nexcept Exception:\n    pass\n",
        limits=Limits(wall_s=20, cpu_s=20),
    )
    assert plant.ok and "PLANTED" in plant.stdout, plant.stderr[-500:]
    planted = int(plant.stdout.split("PLANTED", 1)[1].split()[0])
    assert planted >= 2  # the working directory and /tmp at least
    find = await run_python(
        sandbox,
        FIND + "if libc.shmget(0x7F3A, 0, 0) >= 0:\n    escaped('found shared memory')\n",
        limits=Limits(wall_s=20, cpu_s=20),
    )
    assert find.ok and "PAYLOAD-DONE" in find.stdout, find.stderr[-500:]
    assert "ESCAPED" not in find.stdout, find.stdout
    assert token_files() == []

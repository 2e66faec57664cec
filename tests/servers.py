"""Real `perfsmith serve` processes on loopback, each with its own database and tokens
(session fixtures for the API and UI tests)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from perfsmith.api.tokens import TokenStore
from perfsmith.storage.db import Database

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PLAN_TOOLS = Path(__file__).parent / "api" / "plan_tools.py"

PLAN = """\
Thought: three pauses at once, then their sum.
1. pause(ms=40)
2. pause(ms=80)
3. pause(ms=120)
4. total(a=$1, b=$2, c=$3)
join()
"""
FOLLOW_PLAN = "1. pause(ms=10)\n2. total(a=$1, b=1, c=2)\njoin()\n"
PLAN_SCRIPT = {
    "replies": {
        "planner": [PLAN, FOLLOW_PLAN],
        "joiner": [
            "Thought: summed.\nAction: Finish(the pauses add up to 240)",
            "Thought: again.\nAction: Finish(the follow-up adds up to 13)",
        ],
    },
    "per_token_s": 0.002,
}

OPTIMIZE_PLAN = """\
Thought: profile, propose two rewrites at once, verify each.
1. profile()
2. propose(strategy="algorithm", feedback=$1)
3. propose(strategy="builtins")
4. verify(candidate=$2)
5. verify(candidate=$3)
join()
"""
FOLLOW_OPTIMIZE_PLAN = '1. propose(strategy="data structure")\n2. verify(candidate=$1)\njoin()\n'
# The quadratic lookups done three times over: decisively slower than the reference even
# on a loaded machine (its verdict must read "slower", never "same").
SLOW = """def find_duplicates(words: list[str]) -> list[str]:
    for _ in range(3):
        seen = []
        dupes = []
        for word in words:
            if seen.count(word):
                if dupes.count(word) == 0:
                    dupes.append(word)
            else:
                seen.append(word)
    return dupes
"""
COUNTING = """def find_duplicates(words: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    dupes = []
    for word in words:
        seen = counts.get(word, 0)
        if seen == 1:
            dupes.append(word)
        counts[word] = seen + 1
    return dupes
"""


def fence(code: str) -> str:
    return f"Here it is:\n```python\n{code}```\n"


OPTIMIZE_SCRIPT = {
    "planner": [OPTIMIZE_PLAN, FOLLOW_OPTIMIZE_PLAN],
    "propose": [
        fence((EXAMPLES / "dupes" / "fast_set.py").read_text()),
        fence(SLOW),
        fence(COUNTING),
    ],
    "joiner": [
        "Thought: verified.\nAction: Finish(the set-based rewrite wins)",
        "Thought: verified again.\nAction: Finish(the counting rewrite is verified too)",
    ],
}


KERNEL_PLAN = """\
Thought: read the problem, propose a kernel, verify it.
1. read_problem()
2. propose(strategy="fuse", feedback=$1)
3. verify(candidate=$2)
join()
"""
KERNEL_SCRIPT = {
    "planner": [KERNEL_PLAN],
    # the example kernel: built once for every test that verifies it (shared build cache)
    "propose": [f"```python\n{(EXAMPLES / 'kernels' / 'cpp' / 'softmax.py').read_text()}```"],
    "joiner": ["Thought: verified.\nAction: Finish(the fused kernel is verified)"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    db_url: str
    home: Path
    workspace: Path
    proc: subprocess.Popen[bytes]
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def env(self) -> dict[str, str]:
        return {**os.environ, "PERFSMITH_HOME": str(self.home)}


def start_server(
    folder: Path,
    script: object,
    *extra: str,
    db_url: str | None = None,
    tokens: dict[str, str] | None = None,
) -> Server:
    """A server on a fresh database, or on `db_url` whose `tokens` exist already (a
    restart)."""
    home = folder / "home"
    workspace = folder / "ws"
    shutil.copytree(EXAMPLES / "dupes", workspace / "dupes")
    shutil.copytree(EXAMPLES / "kernels", workspace / "examples" / "kernels")
    script_file = folder / "script.json"
    script_file.write_text(json.dumps(script))
    db_url = db_url or f"sqlite:///{home / 'perfsmith.db'}"
    if tokens is None:
        db = Database(db_url)
        store = TokenStore(db)
        tokens = {
            who: store.create(who, tenant=tenant)
            for who, tenant in (
                ("alice", "acme"),
                ("alice2", "acme"),
                ("bob", "globex"),
                ("fuzz", "fuzz"),
            )
        }
        db.close()
    port = free_port()
    env = {**os.environ, "PERFSMITH_HOME": str(home), "PERFSMITH_DATABASE_URL": db_url}
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perfsmith.cli",
            "serve",
            "--port",
            str(port),
            "--llm",
            f"scripted:{script_file}",
            "--workspace",
            str(workspace),
            "--sandbox",
            "process",
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start:\n" + (folder / "server.log").read_text())
        time.sleep(0.1)
    return Server(url, db_url, home, workspace, proc, tokens)


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def plan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Free-form plans over plan_tools.py: quick runs, for the API's mechanics."""
    server = start_server(
        tmp_path_factory.mktemp("plan-server"), PLAN_SCRIPT, "--tools", str(PLAN_TOOLS)
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def optimize_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The main job through the API: a scripted model, the real sandbox and verifiers."""
    server = start_server(tmp_path_factory.mktemp("optimize-server"), OPTIMIZE_SCRIPT)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def kernel_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Kernel runs through the API: a scripted C++ kernel, built and timed for real."""
    server = start_server(tmp_path_factory.mktemp("kernel-server"), KERNEL_SCRIPT)
    yield server
    stop_server(server)


BATCH = """
[batch]
name = "api-night"
llm = "none"

[[function]]
target = "dupes/dupes.py::find_duplicates"
inputs = "dupes/inputs.py::generate"
candidates = ["dupes/fast_set.py"]
verify_rounds = 4
"""


@pytest.fixture(scope="session")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that works the batch queue too (`serve --work-batches`)."""
    server = start_server(tmp_path_factory.mktemp("batch-server"), PLAN_SCRIPT, "--work-batches")
    yield server
    stop_server(server)

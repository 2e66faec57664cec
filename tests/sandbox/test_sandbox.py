"""What every backend must do for ordinary code: files in and out, statuses, limits,
clean environment, concurrent runs; and the CLI's contract."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from perfsmith.sandbox import launch
from perfsmith.sandbox.base import Limits, Sandbox, SandboxError, Status, run_python
from perfsmith.sandbox.process import remove_stale_runs
from tests.cli_runner import PERFSMITH, cli
from tests.sandbox.conftest import skip_unless_available


async def test_files_in_and_out_and_exit_codes(sandbox: Sandbox) -> None:
    result = await run_python(
        sandbox,
        "import os, sys\n"
        "data = open('in/data.txt').read()\n"
        "os.makedirs('out', exist_ok=True)\n"
        "open('out/result.txt', 'w').write(data.upper())\n"
        "print('cwd files:', sorted(os.listdir('.')))\n"
        "print('err line', file=sys.stderr)\n",
        files={"in/data.txt": b"hello"},
        collect=["out/result.txt", "missing.txt"],
    )
    assert result.status is Status.OK and result.exit_code == 0, result.stderr
    assert result.files == {"out/result.txt": b"HELLO"}
    assert "err line" in result.stderr and "in" in result.stdout
    assert result.backend == sandbox.name
    assert result.wall_s > 0 and result.cpu_s > 0 and 1 < result.max_rss_mb < 200

    failed = await sandbox.run(["/bin/sh", "-c", "echo out; echo oops >&2; exit 7"])
    assert (failed.status, failed.exit_code) == (Status.ERROR, 7)
    assert failed.stdout == "out\n" and failed.stderr == "oops\n"

    missing = await sandbox.run(["/no/such/program"])
    assert missing.status is Status.ERROR and missing.exit_code == 127
    assert "cannot run" in missing.stderr


async def test_each_run_starts_clean(sandbox: Sandbox) -> None:
    await run_python(sandbox, "open('left-behind', 'w').write('x')")
    result = await run_python(sandbox, "import os; print(sorted(os.listdir('.')))")
    assert "left-behind" not in result.stdout
    env = await sandbox.run(["/usr/bin/env"], env={"MY_SETTING": "1"})
    keys = {line.split("=", 1)[0] for line in env.stdout.splitlines()}
    assert "MY_SETTING" in keys and "PATH" in keys
    assert not keys & {"PERFSMITH_REPORT_FD", "PERFSMITH_REPORT_PATH", "PERFSMITH_RLIMITS"}
    # the run's uid has no passwd entry; code that asks who it runs as still gets an answer
    who = await run_python(sandbox, "import getpass; print(getpass.getuser())")
    assert who.ok and who.stdout.strip() == "sandbox", who.stderr


async def test_two_runs_in_flight_do_not_disturb_each_other(sandbox: Sandbox) -> None:
    code = "import sys, time; time.sleep(0.3); print(open('id').read())"
    results = await asyncio.gather(
        *(run_python(sandbox, code, files={"id": str(i).encode()}) for i in range(4))
    )
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]


async def test_limits_are_reported_with_reasons(sandbox: Sandbox) -> None:
    slow = await sandbox.run(["/bin/sleep", "5"], limits=Limits(wall_s=0.5))
    assert slow.status is Status.TIMEOUT and "wall-clock" in (slow.reason or "")
    assert slow.wall_s < 3
    big = await run_python(sandbox, "print('z' * 10**6)", limits=Limits(output_bytes=2048))
    assert big.status is Status.OUTPUT_EXCEEDED and big.stdout_truncated
    assert len(big.stdout) == 2048


async def test_shared_directories_are_read_but_not_written(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    (shared / "torch").mkdir(parents=True)
    (shared / "torch" / "header.gch").write_bytes(b"precompiled")
    code = (
        "import sys\n"
        "print(open(sys.argv[1] + '/torch/header.gch').read())\n"
        "try:\n"
        "    open(sys.argv[1] + '/torch/header.gch', 'w').write('poisoned')\n"
        "    print('written')\n"
        "except OSError as exc:\n"
        "    print('refused', exc.errno)\n"
    )
    argv, files = [sys.executable, "-I", "main.py", str(shared)], {"main.py": code.encode()}
    result = await sandbox.run(argv, files=files, shared=[str(shared)])
    assert result.ok, result.stderr
    assert result.stdout.splitlines()[0] == "precompiled"
    confined = sandbox.name != "process" or os.geteuid() == 0
    if confined:  # the plain process backend, not as root, has no view of its own
        assert result.stdout.splitlines()[1].startswith("refused"), result.stdout
        assert (shared / "torch" / "header.gch").read_bytes() == b"precompiled"
    # without `shared` a private /tmp hides it (where the backend has one)
    hidden = await sandbox.run(argv, files=files)
    if confined:
        assert not hidden.ok and "No such file" in hidden.stderr
    for bad in ("relative/dir", str(tmp_path / "missing")):
        with pytest.raises(SandboxError, match="shared directory"):
            await sandbox.run(["true"], shared=[bad])


async def test_bad_requests_are_refused(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError, match="relative path"):
        await sandbox.run(["true"], files={"../escape": b"x"})
    with pytest.raises(SandboxError, match="relative path"):
        await sandbox.run(["true"], files={"/etc/passwd": b"x"})
    with pytest.raises(SandboxError, match="no command"):
        await sandbox.run([])


def test_cli_json_contract(tmp_path: Path) -> None:
    (tmp_path / "input.txt").write_text("41")
    env = dict(os.environ)
    done = cli(
        env,
        "sandbox",
        "run",
        "--backend",
        "process",
        "--json",
        "--file",
        str(tmp_path / "input.txt"),
        "--",
        sys.executable,
        "-c",
        "print(int(open('input.txt').read()) + 1)",
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert {
        "status",
        "exit_code",
        "stdout",
        "stderr",
        "wall_s",
        "cpu_s",
        "max_rss_mb",
        "backend",
        "truncated",
    } <= data.keys()
    assert (data["status"], data["exit_code"], data["stdout"]) == ("ok", 0, "42\n")
    assert data["backend"] == "process" and data["truncated"] is False

    failing = cli(
        env,
        "sandbox",
        "run",
        "--backend",
        "process",
        "--timeout",
        "0.5",
        "--json",
        "--",
        "sleep",
        "5",
    )
    assert failing.returncode == 0  # whatever the sandboxed command did
    assert json.loads(failing.stdout)["status"] == "timeout"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sandbox", "run", "--json"], "Missing argument"),
        (["sandbox", "run", "--backend", "vm", "--", "true"], "choose one of"),
        (["sandbox", "run", "--timeout", "0", "--", "true"], "Invalid value"),
        (["sandbox", "run", "--memory", "-5", "--", "true"], "Invalid value"),
        (["sandbox", "run", "--file", "/no/such/file", "--", "true"], "not a readable file"),
    ],
)
def test_cli_usage_errors_exit_2(args: list[str], message: str) -> None:
    done = cli(dict(os.environ), *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr


def _token_pids(token: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                continue
    return found


def _argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def _wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.mark.parametrize("backend", ["process", "bubblewrap", "docker"])
def test_nothing_outlives_a_killed_perfsmith(backend: str) -> None:
    """kill -9 of `perfsmith sandbox run` takes its command, and the daemon that command
    started, with it; the run's working directory is removed by the next start."""
    skip_unless_available(backend)
    token = f"outlive-{backend}-{os.getpid()}"
    code = (
        "import os, subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)',"
        f" '{token}-daemon'], start_new_session=True)\n"
        "open('started', 'w').write('1')\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [
            *PERFSMITH,
            "sandbox",
            "run",
            "--backend",
            backend,
            "--timeout",
            "300",
            "--",
            sys.executable,
            "-c",
            code,
            token,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # the daemon is up (an argument of its own names it): the command ran past the
        # sandbox's own set-up
        daemon = f"{token}-daemon".encode()
        assert _wait_for(lambda: any(daemon in _argv(pid) for pid in _token_pids(token)), 60), (
            "the command never started"
        )
    finally:
        proc.kill()
        proc.wait()
    assert _wait_for(lambda: not _token_pids(token), 20), f"left running: {_token_pids(token)}"
    if backend == "docker":  # the next start removes the dead run's container and space
        from perfsmith.sandbox.docker_backend import DockerSandbox

        box = DockerSandbox()
        labels = {"label": f"perfsmith.owner={proc.pid}"}
        assert box.client.containers.list(all=True, filters=labels) == []
        asyncio.run(box.close())
        return
    root = launch.launcher_dir()
    left = sorted(p.name for p in root.iterdir() if p.name.startswith(f"run-{proc.pid}-"))
    assert left, "the killed run left no working directory to clean"
    removed = remove_stale_runs(str(root))
    assert set(left) <= {Path(r).name for r in removed}
    assert not [p for p in root.iterdir() if p.name.startswith(f"run-{proc.pid}-")]


def test_emptying_docker_tmp_keeps_the_mount_points_of_runtime_binds(tmp_path: Path) -> None:
    """A virtualenv under /tmp is bound into the container at a folder the engine made in
    the box's /tmp: emptying /tmp after a run must leave that folder (removing it from the
    host would unmount the virtualenv in the container) and remove everything else."""
    from perfsmith.sandbox.docker_backend import _clear

    (tmp_path / "ci" / ".venv").mkdir(parents=True)
    (tmp_path / "ci" / ".venv" / "marker").write_text("the bind's content")
    (tmp_path / "ci" / "written").write_text("x")
    (tmp_path / "ci" / "made").mkdir()
    (tmp_path / "cache").write_text("x")
    (tmp_path / "planted").mkdir()
    _clear(str(tmp_path), "", {"ci/.venv"})
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "ci",
        "ci/.venv",
        "ci/.venv/marker",
    ]

"""The C launcher is compiled once per machine; sandboxes started at once on a fresh
machine (parallel kernel builds) must agree on it rather than trip over each other. The
Python launcher confines and reports like the C one."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from perfsmith.sandbox import launch
from perfsmith.sandbox.base import Status, run_python
from perfsmith.sandbox.process import ProcessSandbox


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_threads_compiling_the_launcher_at_once_all_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch, "launcher_dir", lambda: tmp_path)
    launch.compiled_launcher.cache_clear()
    barrier = threading.Barrier(8)
    results: list[Path | None] = []
    errors: list[BaseException] = []

    def first_use() -> None:
        barrier.wait()
        try:
            results.append(launch.compiled_launcher.__wrapped__())
        except BaseException as exc:  # the race showed as FileNotFoundError
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    launch.compiled_launcher.cache_clear()
    assert errors == []
    assert len(results) == 8 and len(set(results)) == 1
    binary = results[0]
    assert binary is not None and binary.is_file() and binary.stat().st_mode & 0o111
    assert [p.name for p in tmp_path.iterdir()] == [binary.name]  # no temporary left


CONFINED = """
import os
print(os.getpid(), os.getppid(), os.getuid(), len([p for p in os.listdir('/proc') if p.isdigit()]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the confined launcher runs as root")
@pytest.mark.parametrize("which", ["c", "python"])
async def test_both_launchers_confine_and_report_alike(
    which: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Python launcher (used where no C compiler is found) does what the C one does:
    the command is PID 2 under the run's init, as an unprivileged uid, sees only its own
    processes, and its death by a signal is reported as such."""
    if which == "python":
        monkeypatch.setattr(launch, "compiled_launcher", lambda: None)
    elif shutil.which("cc") is None:
        pytest.skip("no C compiler")
    box = ProcessSandbox()
    result = await run_python(box, CONFINED)
    assert result.ok, result.stderr
    pid, ppid, uid, visible = map(int, result.stdout.split())
    assert (pid, ppid) == (2, 1) and uid >= 200_000 and visible <= 3
    crash = await run_python(box, "import ctypes\nctypes.string_at(0)\n")
    assert crash.status is Status.KILLED and crash.signal == "SIGSEGV", crash
    code = await box.run(["/bin/sh", "-c", "exit 7"])
    assert (code.status, code.exit_code) == (Status.ERROR, 7)

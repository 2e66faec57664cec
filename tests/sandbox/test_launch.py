"""The C launcher is compiled once per machine; sandboxes started at once on a fresh
machine (parallel kernel builds) must agree on it rather than trip over each other."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from perfsmith.sandbox import launch


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

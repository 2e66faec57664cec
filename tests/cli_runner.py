"""Run the real `perfsmith` CLI in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys

PERFSMITH = [sys.executable, "-m", "perfsmith.cli"]


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PERFSMITH, *args], env=env, capture_output=True, text=True, timeout=timeout
    )

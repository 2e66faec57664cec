"""`perfsmith kernel ...` on bad input: a clear message and exit 2, nothing run; the
verify JSON contract on a candidate rejected before compiling."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli_runner import cli

KERNELS = Path(__file__).resolve().parents[1] / "examples" / "kernels"
SOFTMAX = str(KERNELS / "softmax.py")
CPP = str(KERNELS / "cpp" / "softmax.py")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")}


def test_bad_kernel_commands_exit_2_with_a_reason(tmp_path: Path, env: dict[str, str]) -> None:
    not_problem = tmp_path / "not_problem.py"
    not_problem.write_text("import torch\nclass Model(torch.nn.Module):\n    pass\n")
    no_new = tmp_path / "no_new.py"
    no_new.write_text("import torch\nclass Other(torch.nn.Module):\n    pass\n")
    broken = tmp_path / "broken.py"
    broken.write_text("class ModelNew(:\n")
    plain = tmp_path / "plain.py"
    plain.write_text("import torch\nclass ModelNew(torch.nn.Module):\n    pass\n")
    cases = [
        (["verify", str(tmp_path / "missing.py"), CPP], "does not exist"),
        (["verify", str(not_problem), CPP], "defines no get_inputs, get_init_inputs"),
        (["verify", SOFTMAX, str(no_new)], "defines no class ModelNew"),
        (["verify", SOFTMAX, str(broken)], "syntax error at line 1"),
        (["verify", SOFTMAX, CPP, "--device", "tpu"], "--device must be cpu or cuda"),
        (["verify", SOFTMAX, CPP, "--sandbox", "vm"], "--sandbox must be one of"),
        (["optimize", SOFTMAX, "--backend", "fortran"], "--backend must be one of"),
        (["optimize", SOFTMAX, "--backend", "cuda"], "does not write kernels for --device cpu"),
        (["optimize", SOFTMAX, "--llm", "none", "--candidate", str(no_new)], "no class ModelNew"),
        (["optimize", str(tmp_path / "missing.py")], "does not exist"),
        (["tune", SOFTMAX, str(plain)], "declares no tunables"),
        (["tune", SOFTMAX, str(broken)], "syntax error"),
    ]
    try:
        import torch

        if not torch.cuda.is_available():
            cases.append((["verify", SOFTMAX, CPP, "--device", "cuda"], "--compile-only"))
    except ImportError:
        pass
    for args, message in cases:
        done = cli(env, "kernel", *args, timeout=120)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)


def test_verify_json_contract_for_a_rejected_candidate(env: dict[str, str], tmp_path: Path) -> None:
    cheat = tmp_path / "cheat.py"
    cheat.write_text(
        "import torch\nclass ModelNew(torch.nn.Module):\n"
        "    def __init__(self, dim):\n        super().__init__()\n"
        "    def forward(self, x):\n        return torch.softmax(x, dim=1)\n"
    )
    done = cli(env, "kernel", "verify", SOFTMAX, str(cheat), "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert {"compiled", "correct", "failure", "speedup", "ci", "flags"} <= set(result)
    assert result["correct"] is False and result["speedup"] is None and result["ci"] is None
    assert any("torch.softmax" in f for f in result["flags"])
    assert "rejected before compiling" in result["failure"]

"""Batch files: read into jobs, or refused whole with every problem listed."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from perfsmith.batch.spec import deadline_from, load_batch, parse_batch
from perfsmith.errors import BatchFileError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_night_of_jobs_reads_into_runs_with_paths_from_the_file_folder(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "dupes", tmp_path / "dupes")
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("softmax.py", "gelu.py"):
        shutil.copy(EXAMPLES / "kernels" / name, suite / name)
    (tmp_path / "night.toml").write_text(
        """
[batch]
name = "nightly"
until = "07:00"
concurrency = 3
tokens = 5000
llm = "none"

[[function]]
target = "dupes/dupes.py::find_duplicates"
inputs = "dupes/inputs.py::generate"
candidates = ["dupes/fast_set.py"]

[[kernels]]
suite = "suite"
llm = "local"
candidates = { "softmax.py" = ["dupes/fast_set.py"] }
""",
        encoding="utf-8",
    )
    with pytest.raises(BatchFileError) as caught:
        load_batch(tmp_path / "night.toml")
    # the kernel candidate is not a ModelNew file: found while checking, named precisely
    assert caught.value.problems and "kernels[0] (softmax.py)" in caught.value.problems[0]
    text = (
        (tmp_path / "night.toml")
        .read_text()
        .replace('candidates = { "softmax.py" = ["dupes/fast_set.py"] }', "")
    )
    (tmp_path / "night.toml").write_text(text, encoding="utf-8")
    spec = load_batch(tmp_path / "night.toml")
    assert spec.name == "nightly"
    assert spec.budgets["concurrency"] == 3 and spec.budgets["tokens"] == 5000
    assert [j.kind for j in spec.jobs] == ["optimize", "kernel", "kernel"]
    function = spec.jobs[0]
    assert function.llm is None  # llm = "none": model-free
    assert function.config["target"] == f"{tmp_path}/dupes/dupes.py::find_duplicates"
    assert function.config["candidates"] == [str(tmp_path / "dupes" / "fast_set.py")]
    # a suite is a job per problem, grouped for its fast_1; the job's own llm wins
    assert [j.name for j in spec.jobs[1:]] == ["suite/gelu", "suite/softmax"]
    assert {j.group for j in spec.jobs[1:]} == {"suite"}
    assert {j.llm for j in spec.jobs[1:]} == {"local"}
    # torch's compiler's candidate and the torch.compile baseline are on unless turned off
    assert all(j.config["compiler"] for j in spec.jobs[1:])
    assert all(j.config["settings"]["versus_compile"] for j in spec.jobs[1:])
    assert spec.deadline is not None
    assert timedelta(0) < spec.deadline - datetime.now(UTC) <= timedelta(days=1)


def test_every_problem_is_listed_and_nothing_is_read_past_them(tmp_path: Path) -> None:
    text = """
[batch]
concurrency = 0
until = "25:99"
colour = "blue"

[[function]]
target = "missing.py::f"

[[function]]
target = "x.py::f"
rounds = "many"

[[repo]]
command = "make check"

[[repo]]
url = "not a url"
command = "true"

[[kernels]]
suite = "nowhere"
llm = "gpt-9000"

[unknown]
"""
    with pytest.raises(BatchFileError) as caught:
        parse_batch(text, base=tmp_path)
    problems = caught.value.problems
    expected = [
        "batch.concurrency",
        "batch.colour",
        "batch.until",
        "function[1].rounds",
        "function[0]: function file",
        "repo[0]: give path or url",
        "repo[1]: url = 'not a url' is not a git URL",
        "kernels[0]: llm = 'gpt-9000'",
        "kernels[0]: suite",
        "unknown: not a table",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected), problems
    assert f"{len(expected)} problems; nothing was submitted" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no jobs"),
        ("[batch\n", "not valid TOML"),
        ("a = " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("[[function]]\ntarget = 'x.py::f'\n" + "# padding\n" * 200_000, "bytes"),
        ("function = 3", "write [[function]] tables"),
        ("[batch]\nname = '" + "n" * 300 + "'", "batch.name"),
    ],
)
def test_malformed_and_hostile_files_are_refused(text: str, problem: str, tmp_path: Path) -> None:
    with pytest.raises(BatchFileError) as caught:
        parse_batch(text, base=tmp_path)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_deadlines_are_the_next_such_time_or_a_moment_to_come() -> None:
    now = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    local = now.astimezone()
    later = deadline_from(f"{(local.hour + 1) % 24:02d}:00", now)
    assert timedelta(minutes=59) < later - now <= timedelta(hours=1)
    earlier = deadline_from(f"{(local.hour - 1) % 24:02d}:00", now)  # tomorrow's
    assert timedelta(hours=22) < earlier - now <= timedelta(hours=23)
    with pytest.raises(ValueError, match="already passed"):
        deadline_from("2020-01-01T07:00", now)
    with pytest.raises(ValueError, match="neither HH:MM"):
        deadline_from("tomorrow", now)

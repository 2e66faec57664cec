"""`perfsmith optimize-repo` on the example repository: a branch with verified commits,
the user's working tree untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_runner import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# the example project's own tests: this environment's pytest plugins (3 s of imports
# at every start) are not the project's
COMMAND = f"env PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 {sys.executable} -m pytest -q -p no:cacheprovider"


CANDIDATES = EXAMPLES / "repo_candidates"
# both hot functions of examples/repo, model-free, with hand-written candidates
TWO_FUNCTIONS = (
    "--command",
    COMMAND,
    "--top",
    "2",
    "--llm",
    "none",
    "--candidate",
    f"textstats/core.py::char_histogram={CANDIDATES / 'char_histogram.py'}",
    "--candidate",
    f"textstats/core.py::unique_words={CANDIDATES / 'unique_words.py'}",
    "--branch",
    "faster",
    "--backend",
    "process",
    "--verify-rounds",
    "6",
    "--json",
)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "textstats-repo"
    shutil.copytree(EXAMPLES / "repo", path)
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    return path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home")}
    return cli(env, "optimize-repo", *args, timeout=900)


@pytest.mark.slow(seconds=30)
def test_verified_speedups_land_on_a_new_branch_and_the_tree_is_untouched(
    tmp_path: Path, repo: Path
) -> None:
    before = (repo / "textstats" / "core.py").read_text()
    head = git(repo, "rev-parse", "HEAD")
    done = run(tmp_path, str(repo), *TWO_FUNCTIONS)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    targets = [f["target"] for f in result["functions"]]
    # the profile ranked the project's own hot functions (tests and summary excluded)
    assert set(targets) == {"textstats/core.py::char_histogram", "textstats/core.py::unique_words"}
    kept = [f for f in result["functions"] if f["kept"]]
    # both verified on the calls the tests really make (recorded by a second run): on
    # inputs inferred from type hints (short strings) dict.fromkeys is not faster than a
    # scan of a short list, on the tests' 3000-word corpus it is many times faster
    assert {f["target"] for f in kept} == set(targets), result
    assert all(f["speedup"] > 5 for f in kept), result
    # one commit per kept speedup, on the new branch only
    log = git(repo, "log", "--format=%s", f"{head}..faster").splitlines()
    assert len(log) == len(kept) and all(line.startswith("perfsmith: ") for line in log)
    assert "hist.get(ch, 0) + 1" in git(repo, "show", "faster:textstats/core.py")
    # the user's working tree and branch are as they were
    assert (repo / "textstats" / "core.py").read_text() == before
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "worktree", "list").count("\n") == 0  # the temporary worktree is gone
    assert Path(result["report"]).is_file()


def test_bad_repositories_and_commands_are_clear_errors(tmp_path: Path, repo: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    given = tmp_path / "b.py"
    given.write_text("def f():\n    return 1\n")
    cand = f"a.py::f={given}"
    cases = [
        (
            [str(plain), "--command", COMMAND, "--llm", "none", "--candidate", cand],
            "not a git repository",
        ),
        (
            [str(repo), "--command", "false", "--llm", "none", "--candidate", cand],
            "fails before any change",
        ),
        (
            [str(repo), "--command", "no-such-program-xyz", "--llm", "none", "--candidate", cand],
            "cannot run",
        ),
    ]
    for args, message in cases:
        done = run(tmp_path, *args, "--backend", "process")
        assert done.returncode == 1, (args, done.stderr)
        assert message in done.stderr, done.stderr
    # a failed attempt leaves no branch and no worktree behind
    assert "perfsmith/" not in git(repo, "branch", "--list")
    assert git(repo, "worktree", "list").count("\n") == 0
    git(repo, "branch", "taken")
    done = run(
        tmp_path,
        str(repo),
        "--command",
        COMMAND,
        "--branch",
        "taken",
        "--llm",
        "none",
        "--candidate",
        cand,
        "--backend",
        "process",
    )
    assert done.returncode == 1 and "already exists" in done.stderr
    done = run(tmp_path, str(repo), "--command", COMMAND, "--candidate", "nonsense")
    assert done.returncode == 2
    # a candidate file that is not there: a wrong command line, refused before any work
    done = run(tmp_path, str(repo), "--command", COMMAND, "--candidate", "a.py::f=nope.py")
    assert done.returncode == 2 and "--candidate nope.py is not a readable file" in done.stderr
    assert git(repo, "status", "--porcelain") == ""


@pytest.mark.slow(seconds=50)
def test_a_library_with_slow_methods_gets_verified_commits_from_degenerate_plans(
    tmp_path: Path,
) -> None:
    """A package of several modules and classes with its pytest suite: the planner writes
    only `profile()` calls (in repo mode they answer with the command's profile), the
    guard falls back to the default plan, and the catalogue's rewrites of methods and
    functions are verified on the calls the suite makes and kept as commits the suite
    accepts."""
    repo = tmp_path / "inventory-repo"
    shutil.copytree(EXAMPLES / "inventory_repo", repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = git(repo, "rev-parse", "HEAD")
    short = "".join(f"{i}. profile()\n" for i in range(1, 7)) + "join()\n"
    script = tmp_path / "script.json"
    script.write_text(
        json.dumps(
            {
                "planner": [short, short],
                "propose": ["no code today"] * 8,
                "joiner": ["Thought: done.\nAction: Finish(done)"] * 3,
            }
        )
    )
    done = run(
        tmp_path,
        str(repo),
        "--command",
        COMMAND,
        "--top",
        "4",
        "--llm",
        f"scripted:{script}",
        "--candidates",
        "1",
        "--backend",
        "process",
        "--verify-rounds",
        "6",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    kept = {f["target"]: f for f in result["functions"] if f["kept"]}
    # methods are ranked and optimized like functions
    assert {
        "inventory/catalog.py::Catalog.unknown",
        "inventory/orders.py::OrderBook.customers",
    } <= set(kept), result
    assert all(f["speedup"] > 1.2 for f in kept.values())
    branch = result["branch"]
    log = git(repo, "log", "--format=%s", f"{head}..{branch}").splitlines()
    assert len(log) == len(kept) >= 3
    # the suite passes on the branch
    git(repo, "checkout", "-q", branch)
    suite = subprocess.run(COMMAND.split(), cwd=repo, capture_output=True, text=True)
    assert suite.returncode == 0, suite.stdout
    assert "_as_lookup(self.skus)" in (repo / "inventory" / "catalog.py").read_text()
    # in repo mode profile() answered with the command's profile, not "no workload"
    home = Path(tmp_path / "home")
    from perfsmith.storage.db import Database
    from perfsmith.storage.models import Task

    db = Database(f"sqlite:///{home / 'perfsmith.db'}")
    with db.session() as s:
        profiles = [t.result_text or "" for t in s.query(Task).filter(Task.tool == "profile")]
    db.close()
    assert profiles and all("The project's command" in p for p in profiles)


@pytest.mark.slow(seconds=35)
def test_a_killed_repository_run_resumes_where_it_stopped(tmp_path: Path, repo: Path) -> None:
    """kill -9 while the second function's plan runs: `runs resume` of the repository run
    keeps the first function's commit (its optimize run is not started again), resumes the
    second function's optimize run, commits it, and removes the worktree."""
    import signal
    import time

    from perfsmith.storage.db import Database
    from perfsmith.storage.runs import RunStore
    from tests.cli_runner import PERFSMITH

    head = git(repo, "rev-parse", "HEAD")
    db_url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {**os.environ, "PERFSMITH_HOME": str(tmp_path / "home"), "PERFSMITH_DATABASE_URL": db_url}
    proc = subprocess.Popen(
        [*PERFSMITH, "optimize-repo", str(repo), *TWO_FUNCTIONS],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = RunStore(Database(db_url))

    def second_function_planned() -> bool:
        children = [r for r in store.list_runs() if r.kind == "optimize"]
        return len(children) == 2 and any(
            child.status == "running" and store.tasks(child.id) for child in children
        )

    deadline = time.monotonic() + 600
    while not second_function_planned():
        assert time.monotonic() < deadline, "the second function was never planned"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [parent] = [r for r in store.list_runs() if r.kind == "repo"]
    children = sorted((r for r in store.list_runs() if r.kind == "optimize"), key=lambda r: r.id)
    first_done = [c.id for c in children if c.status == "done"]
    assert len(first_done) == 1 and parent.status == "running"
    assert len(git(repo, "log", "--format=%s", f"{head}..faster").splitlines()) == 1

    resumed = cli(env, "runs", "resume", parent.id, "--json", timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    assert [f["kept"] for f in result["functions"]] == [True, True], result
    # the first function's optimize run was not started again; the second was resumed
    optimize_runs = [r for r in store.list_runs() if r.kind == "optimize"]
    assert len(optimize_runs) == 2 and all(r.status == "done" for r in optimize_runs)
    [second] = [r for r in optimize_runs if r.id not in first_done]
    assert "run_resumed" in [e.type for e in store.events(second.id)]
    assert {f["run_id"] for f in result["functions"]} == {r.id for r in optimize_runs}
    log = git(repo, "log", "--format=%s", f"{head}..faster").splitlines()
    assert len(log) == 2 and all(line.startswith("perfsmith: ") for line in log)
    assert store.get_run(parent.id).status == "done"
    assert git(repo, "rev-parse", "HEAD") == head and git(repo, "status", "--porcelain") == ""
    assert git(repo, "worktree", "list").count("\n") == 0
    assert not (tmp_path / "home" / "repo-runs" / parent.id).exists()

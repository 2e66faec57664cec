"""The README's commands are the CLI's: every `perfsmith ...` line in its shell blocks
names a real command and real options, parses as written (a concrete line) and names
files that are in the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from typer.core import TyperGroup
from typer.main import get_command

from perfsmith.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# what a synopsis line writes for "fill this in"
PLACEHOLDER = re.compile(r"\[|\]|\.\.\.|\b[A-Z][A-Z_.]*[A-Z]\b|\b[A-Z]\b")


def readme_commands() -> list[str]:
    """Each `perfsmith ...` line of the README's shell blocks, continuations joined."""
    lines = README.read_text(encoding="utf-8").splitlines()
    commands: list[str] = []
    fenced, shell = False, False
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fenced = not fenced
            shell = fenced and line[3:].strip() in ("sh", "bash", "console", "")
        elif shell:
            text = line.strip().removeprefix("$ ").removeprefix(".venv/bin/")
            if text.startswith("perfsmith "):
                while text.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    text = text[:-1].rstrip() + " " + lines[i].strip()
                commands.append(text)
        i += 1
    return commands


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (click) command a command line runs, and the arguments it is given."""
    command: Any = get_command(app)
    rest = words[1:]
    while isinstance(command, TyperGroup) and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    return command, rest


COMMANDS = readme_commands()


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 15
    assert any(c.startswith("perfsmith optimize ") for c in COMMANDS)


@pytest.mark.parametrize("line", COMMANDS)
def test_each_readme_command_is_the_clis(line: str) -> None:
    words = shlex.split(line, comments=True)
    command, args = resolve(words)
    assert not isinstance(command, TyperGroup), f"{line!r}: no such command"
    known = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)}
    named = {w.split("=")[0] for w in args if w.startswith("--") and w != "--"}
    assert named <= known, f"{line!r}: {sorted(named - known)} are not options of the command"
    if PLACEHOLDER.search(line.split(" -- ")[0]):
        return  # a synopsis: its options are checked, its values are placeholders
    with command.make_context(words[0], list(args)) as ctx:
        assert ctx.params is not None  # parsed as written
    for word in args:
        path = word.split("::")[0]
        if "::" in word or (path.startswith("examples/") and "." in Path(path).name):
            assert (ROOT / path).exists(), f"{line!r} names {path}, which is not in the repo"

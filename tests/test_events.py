"""The event vocabulary is the one contract between the writers and every reader: the UI's
script reads only fields it defines, and stored events read back as their models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from perfsmith.events import EVENT_TYPES, JoinDecided, RunFinished, TaskFinished, read_event

APP_JS = Path(__file__).resolve().parents[1] / "perfsmith" / "ui" / "static" / "app.js"


def _cases(script: str) -> dict[str, str]:
    """The body of each `case "TYPE":` of the UI's event switch."""
    switch = script[script.index("function onEvent(ev)") :]
    switch = switch[: switch.index("default:")]
    parts = re.split(r'case "([a-z_]+)":', switch)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_the_ui_reads_only_fields_the_vocabulary_defines() -> None:
    script = APP_JS.read_text(encoding="utf-8")
    cases = _cases(script)
    assert {"task_parsed", "task_finished", "run_finished", "join"} <= cases.keys()
    for type_, body in cases.items():
        assert type_ in EVENT_TYPES, f"the UI handles {type_!r}, which no writer emits"
        fields = set(EVENT_TYPES[type_].model_fields)
        read = set(re.findall(r"\bp\.([a-z_]+)", body))
        assert read <= fields, f"{type_}: the UI reads {sorted(read - fields)}, not defined"
    guarded = r'ev\.type === "([a-z_]+)"[^\n]*?ev\.payload\.([a-z_]+)'
    for type_, field in re.findall(guarded, script):
        assert field in EVENT_TYPES[type_].model_fields, (type_, field)
    for type_ in re.findall(r'ev\.type === "([a-z_]+)"', script):
        assert type_ in EVENT_TYPES


def test_a_renamed_field_would_be_caught() -> None:
    """The check above fails for a field the vocabulary lacks (the test can fail)."""
    body = _cases('function onEvent(ev) { case "task_finished": x = p.runtime_s; default: }')
    read = set(re.findall(r"\bp\.([a-z_]+)", body["task_finished"]))
    assert not read <= set(TaskFinished.model_fields)


def test_stored_payloads_read_back_as_their_models() -> None:
    finished = RunFinished(status="done", answer="3x faster", best=2)
    stored = finished.fields()
    assert "type" not in stored and stored["answer"] == "3x faster"
    again = read_event("run_finished", stored)
    assert again == finished and again["best"] == 2
    # an event stored before a field was added reads back as it was stored
    old = read_event("join", {"round": 1, "action": "finish", "text": "done"})
    assert isinstance(old, JoinDecided) and old["text"] == "done"
    with pytest.raises(ValidationError):
        RunFinished(status="exploded")  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        read_event("no_such_event", {})

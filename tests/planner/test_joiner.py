from __future__ import annotations

import pytest

from perfsmith.planner.joiner import parse_join


@pytest.mark.parametrize(
    ("text", "action", "answer", "thought"),
    [
        ("Thought: ok\nAction: Finish(42)", "finish", "42", "ok"),
        ("Thought: a\nb\nAction: Finish(f(x) = (x + 1))", "finish", "f(x) = (x + 1)", "a\nb"),
        ("Action: Finish('quoted (with parens)')", "finish", "quoted (with parens)", None),
        ("Thought: no\nAction: Replan(tool 2 failed)", "replan", "tool 2 failed", "no"),
        ("Replan(nothing worked)", "replan", "nothing worked", None),
        ("finish(lowercase)", "finish", "lowercase", None),
    ],
)
def test_decisions(text: str, action: str, answer: str, thought: str | None) -> None:
    d = parse_join(text)
    assert (d.action, d.text, d.thought) == (action, answer, thought)
    assert d.well_formed


def test_unclosed_action_and_free_text() -> None:
    d = parse_join("Action: Finish(the answer is 7")
    assert (d.action, d.text, d.well_formed) == ("finish", "the answer is 7", False)
    d = parse_join("just text")
    assert (d.action, d.text, d.well_formed) == ("finish", "just text", False)

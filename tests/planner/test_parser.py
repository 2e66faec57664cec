from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsmith.planner.parser import parse_plan
from perfsmith.planner.plan import (
    Join,
    PlanLineError,
    Ref,
    TaskSpec,
    Template,
    render_args,
    substitute,
)
from perfsmith.planner.stream import StreamingPlanParser
from perfsmith.tools.registry import ToolRegistry, tool


@tool
def search(query: str, limit: int = 5) -> list[str]:
    """Search for documents."""
    return [query] * limit


@tool
def combine(parts: list[Any], sep: str = " ") -> str:
    """Join parts."""
    return sep.join(map(str, parts))


@tool
def lookup(table: dict[str, Any], key: str) -> Any:
    """Look a key up."""
    return table[key]


REGISTRY = ToolRegistry([search, combine, lookup])


def tasks(items: list[Any]) -> list[TaskSpec]:
    return [i for i in items if isinstance(i, TaskSpec)]


def errors(items: list[Any]) -> list[PlanLineError]:
    return [i for i in items if isinstance(i, PlanLineError)]


def test_llmcompiler_plan_parses_with_dependencies_and_references() -> None:
    plan = (
        "Thought: find both first\n"
        '1. search("cats")\n'
        '2. search(query="dogs", limit=2)\n'
        '3. combine(["$1", $2, "both: ${1} and $2"])\n'
        "4. lookup({'a': $3, 'b': [1, -2.5, None, True]}, key='a')\n"
        "5. join()\n"
    )
    items = parse_plan(plan, REGISTRY)
    assert not errors(items)
    assert isinstance(items[-1], Join)
    t1, t2, t3, t4 = tasks(items)
    assert t1.thought == "find both first" and t1.deps == () and t1.args == {"query": "cats"}
    assert t2.args == {"query": "dogs", "limit": 2}
    assert t3.deps == (1, 2)
    assert t3.args["parts"][0] == Ref(1) and t3.args["parts"][1] == Ref(2)
    assert t3.args["parts"][2] == Template(("both: ", Ref(1), " and ", Ref(2)))
    assert t4.deps == (3,) and t4.args["table"]["b"] == [1, -2.5, None, True]


def test_substitution_keeps_values_and_interpolates_text() -> None:
    items = tasks(parse_plan('1. search("x")\n2. combine([$1, "n=$1"])\njoin()\n', REGISTRY))
    resolved = substitute(items[1].args, {1: {"k": [1, 2]}})
    assert resolved["parts"][0] == {"k": [1, 2]}  # a dict stays a dict
    assert resolved["parts"][1] == 'n={"k": [1, 2]}'


def test_rendered_args_round_trip_through_the_parser() -> None:
    plan = (
        '1. search("a $b", limit=3)\n2. combine([$1, "x$1y", (1,), {"k": $1}], sep="\\n")\njoin()'
    )
    first = tasks(parse_plan(plan, REGISTRY))
    again_text = "\n".join(f"{t.idx}. {t.tool}({render_args(t.args)})" for t in first) + "\njoin()"
    again = tasks(parse_plan(again_text, REGISTRY))
    assert [(t.idx, t.tool, t.args, t.deps) for t in again] == [
        (t.idx, t.tool, t.args, t.deps) for t in first
    ]


def test_multiline_string_argument_spans_lines() -> None:
    plan = (
        '1. combine(["""line one\n2. not a task\nline three"""], sep="-")\n2. search("x")\njoin()'
    )
    items = parse_plan(plan, REGISTRY)
    assert not errors(items)
    t1, t2 = tasks(items)
    assert t1.args["parts"] == ["line one\n2. not a task\nline three"]
    assert t2.idx == 2


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ('1. search("a")\n2. combine([$3])\n3. search("b")\njoin()', "later or the same task"),
        ('1. search("a")\n2. combine([$2])\njoin()', "later or the same task"),  # self-cycle
        ('1. search("a")\n3. combine([$2])\njoin()', "no earlier line defines"),
        ('1. frobnicate("a")\njoin()', "unknown tool 'frobnicate'"),
        ("1. search(5)\njoin()", "valid string"),
        ('1. search("a", limit="many")\njoin()', "valid integer"),
        ('1. search("a", colour="red")\njoin()', "no argument 'colour'"),
        ("1. search()\njoin()", "missing required argument"),
        ('1. search("a", "b", 3)\njoin()', "takes 2 argument"),
        ('1. search("a")\n1. search("b")\njoin()', "duplicate task id 1"),
        ('2. search("a")\n1. search("b")\njoin()', "not greater than the previous id"),
        ('1. search("a")', "without join()"),
        ("1. search(query)\njoin()", "bare name 'query'"),
        ('1. search(f"x{1}")\njoin()', "f-strings"),
        ('1. search("a" + "b")\njoin()', "only literal values"),
        ("1. search(*['a'])\njoin()", "unpacking"),
        ("1. search('a'\njoin()", "not closed"),
        ("1. search('a') search('b')\njoin()", "not a valid call"),
        ("1. __import__('os').system('x')\njoin()", "expected `tool_name(arguments)`"),
    ],
)
def test_invalid_plans_give_error_observations(plan: str, message: str) -> None:
    errs = errors(parse_plan(plan, REGISTRY))
    assert errs, "expected an error observation"
    assert any(message in e.message for e in errs), [e.message for e in errs]


def test_lines_after_join_are_ignored_and_prose_is_skipped() -> None:
    plan = 'Here is my plan:\n```\n1. search("a")\njoin()\n```\n2. search("b")\n'
    items = parse_plan(plan, REGISTRY)
    assert [t.idx for t in tasks(items)] == [1]
    assert not errors(items)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 50])
def test_streaming_gives_each_task_when_its_line_completes(chunk: int) -> None:
    plan = '1. search("a")\n2. search("b")\n3. combine([$1, $2])\njoin()\n'
    parser = StreamingPlanParser(REGISTRY)
    seen: list[tuple[int, int]] = []  # (task idx, characters fed when it appeared)
    for pos in range(0, len(plan), chunk):
        for item in parser.feed(plan[pos : pos + chunk]):
            if isinstance(item, TaskSpec):
                seen.append((item.idx, min(pos + chunk, len(plan))))
    parser.close()
    line_ends = [plan.index("\n", plan.index(f"{i}. ")) + 1 for i in (1, 2, 3)]
    assert [i for i, _ in seen] == [1, 2, 3]
    for (_, fed), end in zip(seen, line_ends, strict=True):
        assert end <= fed < end + chunk  # emitted with the chunk that finished its line


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    parser = StreamingPlanParser(REGISTRY)
    items = parser.feed(text) + parser.close()
    assert all(isinstance(i, (TaskSpec, PlanLineError, Join)) for i in items)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                'search("',
                "$1",
                "${2}",
                "(",
                ")",
                "[",
                "]",
                '"""',
                "'",
                "\n",
                "1. ",
                "2. ",
                "join()",
                "combine(",
                ", ",
                "x",
                "#",
                "\\",
                "{",
                "}",
                ":",
            ]
        ),
        max_size=40,
    )
)
def test_plan_shaped_noise_never_raises(pieces: list[str]) -> None:
    parser = StreamingPlanParser(REGISTRY)
    items = parser.feed("".join(pieces)) + parser.close()
    assert all(isinstance(i, (TaskSpec, PlanLineError, Join)) for i in items)


def test_the_models_invalid_escapes_raise_no_python_warnings() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning about the model's text fails the test
        parser = StreamingPlanParser(REGISTRY)
        items = parser.feed('1. search(query="\\[a-z\\]+")\njoin()\n') + parser.close()
    assert isinstance(items[0], TaskSpec) and items[0].args["query"] == "\\[a-z\\]+"

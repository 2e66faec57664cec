"""ruff's fixes as a candidate source: the fixed function and the rules behind it."""

from __future__ import annotations

import textwrap

from perfsmith.tools.ruff_fixes import ruff_fix

SOURCE = textwrap.dedent(
    """
    import os


    def squares(xs):
        out = []
        for x in xs:
            if x > 0:
                out.append(x * x)
        return out


    def untouched(xs):
        return [x for x in xs]
    """
)


async def test_ruff_rewrites_the_function_alone_and_names_its_rules() -> None:
    fixed = await ruff_fix(SOURCE, "squares")
    assert fixed is not None
    assert fixed.rules == ("PERF401",) and fixed.origin == "ruff:PERF401"
    assert "out = [x * x for x in xs if x > 0]" in fixed.code
    assert "untouched" not in fixed.code and "import os" not in fixed.code
    namespace: dict[str, object] = {}
    exec(fixed.code, namespace)
    assert namespace["squares"]([3, -1, 2]) == [9, 4]  # type: ignore[operator]


async def test_a_function_ruff_has_nothing_for_gives_no_candidate() -> None:
    assert await ruff_fix("def f(x):\n    return x + 1\n", "f") is None

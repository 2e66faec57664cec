"""The rewrite catalogue: every rule fires on its pattern and the rewrite returns what the
original returns; every rule refuses code where its rewrite would change behaviour."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from perfsmith.tools.rewrites import RULE_IDS, findings, rewrites
from perfsmith.workflows.candidates import splice


def _run(source: str, function: str, args: tuple[Any, ...]) -> tuple[str, Any]:
    namespace: dict[str, Any] = {"__name__": "candidate"}
    exec(compile(source, "<candidate>", "exec"), namespace)
    try:
        return "ok", namespace[function](*args)
    except Exception as exc:
        return "raised", type(exc).__name__


# rule -> (module source, function, inputs): the rule must apply and agree on every input
POSITIVE: dict[str, tuple[str, str, list[tuple[Any, ...]]]] = {
    "list-membership-to-set": (
        """
        def common(a, b):
            return [x for x in a if x in b]
        """,
        "common",
        [([1, 2, 3, 4], [2, 4, 6]), ([], []), ([[1], [2]], [[2]]), (["ab", "c"], "abc")],
    ),
    "grown-list-membership-to-set": (
        """
        def dedupe(items):
            seen = []
            for x in items:
                if x not in seen:
                    seen.append(x)
            return seen
        """,
        "dedupe",
        [([3, 1, 3, 2, 1],), ([],), (["a", "b", "a"],)],
    ),
    "count-in-loop-to-counter": (
        """
        def singles(words):
            return [w for w in words if words.count(w) == 1]
        """,
        "singles",
        [(["a", "b", "a", "c"],), ([],), ([[1], [1], [2]],)],
    ),
    "index-in-loop-to-dict": (
        """
        def positions(items, wanted):
            return [items.index(w) for w in wanted]
        """,
        "positions",
        [([5, 6, 5, 7], [5, 7, 6]), ([1, 2], [3]), ([[1], [2]], [[2]])],
    ),
    "slice-sums-to-prefix-sums": (
        """
        def window_sums(xs, k):
            return [sum(xs[i:i + k]) for i in range(len(xs))]
        """,
        "window_sums",
        [([1, 2, 3, 4, 5], 2), ([], 3), ([4, -1, 7], 5)],
    ),
    "pop-front-to-deque": (
        """
        def drain(items):
            queue = list(items)
            out = []
            while queue:
                x = queue.pop(0)
                if x > 0:
                    queue.append(x - 1)
                out.append(x)
            return out
        """,
        "drain",
        [([3, 0, 2],), ([],)],
    ),
    "insert-front-to-append-reverse": (
        """
        def backwards(items):
            out = []
            for x in items:
                out.insert(0, x * 2)
            return out
        """,
        "backwards",
        [([1, 2, 3],), ([],)],
    ),
    "counting-loop-to-counter": (
        """
        def histogram(words):
            counts = {}
            for w in words:
                if w.lower() in counts:
                    counts[w.lower()] += 1
                else:
                    counts[w.lower()] = 1
            return counts
        """,
        "histogram",
        [(["A", "b", "a"],), ([],)],
    ),
    "string-concat-to-join": (
        """
        def render(rows):
            out = "rows:"
            for name, value in rows:
                out = out + name + "=" + str(value) + ";"
            return out
        """,
        "render",
        [([("a", 1), ("b", 2)],), ([],), ([("a", None)],)],
    ),
    "sorted-end-to-min-max": (
        """
        def extremes(xs):
            return sorted(xs)[0], sorted(xs, reverse=True)[0], sorted(xs, key=abs)[0]
        """,
        "extremes",
        [([3, -4, 1],), ([],)],
    ),
    "sorted-prefix-to-heapq": (
        """
        def top(xs):
            return sorted(xs, reverse=True)[:3], sorted(xs, key=abs)[:2]
        """,
        "top",
        [([5, -1, 9, 2, -9],), ([],)],
    ),
    "hoist-loop-invariant": (
        """
        def scale(xs, weights):
            return [x / max(weights) for x in xs]
        """,
        "scale",
        [([1, 2], [4, 2]), ([], []), ([1], [])],
    ),
    "hoist-module-attribute": (
        """
        import math

        def norms(points):
            out = []
            for x, y in points:
                out.append(math.sqrt(x * x + y * y))
            return out
        """,
        "norms",
        [([(3, 4), (1, 1)],)],
    ),
    "nested-loop-to-dict-index": (
        """
        def join(orders, users):
            out = []
            for o in orders:
                for u in users:
                    if u["id"] == o["user"]:
                        out.append((o["n"], u["name"]))
            return out
        """,
        "join",
        [
            (
                [{"user": 1, "n": 5}, {"user": 2, "n": 6}],
                [{"id": 2, "name": "b"}, {"id": 1, "name": "a"}, {"id": 1, "name": "c"}],
            ),
            ([], []),
        ],
    ),
    "accumulate-to-sum": (
        """
        def total(xs):
            acc = 0
            for x in xs:
                acc += x * x
            return acc
        """,
        "total",
        [([1, 2, 3],), ([],)],
    ),
    "index-loop-to-iteration": (
        """
        def pairs(xs):
            out = []
            for i in range(len(xs)):
                out.append((xs[i], xs[i] * 2))
            return out
        """,
        "pairs",
        [([1, 2],), ([],)],
    ),
    "precompile-regex": (
        """
        import re

        def errors(lines):
            return [l for l in lines if re.match(r"ERR\\d+", l, flags=re.I)]
        """,
        "errors",
        [(["err1 x", "ok", "ERR22"],)],
    ),
    "memoize-recursion": (
        """
        def paths(r: int, c: int) -> int:
            if r == 0 or c == 0:
                return 1
            return paths(r - 1, c) + paths(r, c - 1)
        """,
        "paths",
        [(5, 6), (0, 3)],
    ),
}

# rule -> code where the rule must not apply (its rewrite would change behaviour)
NEGATIVE: dict[str, tuple[str, str]] = {
    "list-membership-to-set": (
        """
        def grow(a, b):
            out = []
            for x in a:
                if x in b:
                    out.append(x)
                b.remove(a[0])  # the list changes in the loop
            return out
        """,
        "grow",
    ),
    "grown-list-membership-to-set": (
        """
        def keep(items):
            seen = []
            for x in items:
                if x in seen:
                    seen.remove(x)  # not only appended to
                else:
                    seen.append(x)
            return seen
        """,
        "keep",
    ),
    "count-in-loop-to-counter": (
        """
        def f(words):
            out = []
            for w in words:
                out.append(words.count(w))
                words.append(w)
            return out
        """,
        "f",
    ),
    "index-in-loop-to-dict": (
        """
        def f(items, wanted):
            for w in wanted:
                items[items.index(w)] = None  # items changes
            return items
        """,
        "f",
    ),
    "slice-sums-to-prefix-sums": (
        """
        def f(xs):
            out = []
            for i in range(len(xs)):
                xs[i] = sum(xs[:i])  # xs changes between the sums
                out.append(xs[i])
            return out
        """,
        "f",
    ),
    "pop-front-to-deque": (
        """
        def f(items):
            queue = list(items)
            while queue:
                queue.pop(0)
                queue.sort()  # a list method a deque lacks
            return queue
        """,
        "f",
    ),
    "insert-front-to-append-reverse": (
        """
        def f(items):
            out = []
            for x in items:
                out.insert(0, x)
                if len(out) > 2:  # reads the list mid-loop
                    break
            return out
        """,
        "f",
    ),
    "counting-loop-to-counter": (
        """
        def f(words, counts):
            for w in words:  # counts is not a fresh dict
                if w in counts:
                    counts[w] += 1
                else:
                    counts[w] = 1
            return counts
        """,
        "f",
    ),
    "string-concat-to-join": (
        """
        def f(rows):
            out = ""
            for r in rows:
                out += r
                if len(out) > 10:  # reads the string mid-loop
                    break
            return out
        """,
        "f",
    ),
    "sorted-end-to-min-max": (
        """
        def f(xs):
            return sorted(xs, key=abs)[-1]  # ties: sorted keeps the last, max the first
        """,
        "f",
    ),
    "sorted-prefix-to-heapq": (
        """
        def f(xs):
            return sorted(xs)[:-1]  # all but the last
        """,
        "f",
    ),
    "hoist-loop-invariant": (
        """
        def f(xs, seen):
            out = []
            for x in xs:
                out.append(len(sorted(seen)))
                seen.add(x)
            return out
        """,
        "f",
    ),
    "hoist-module-attribute": (
        """
        import math

        def f(x):
            return math.sqrt(x)  # no loop: nothing repeats
        """,
        "f",
    ),
    "nested-loop-to-dict-index": (
        """
        def f(orders, users):
            out = []
            for o in orders:
                for u in users:
                    if u.matches(o):  # not an equality of keys
                        out.append(u)
            return out
        """,
        "f",
    ),
    "accumulate-to-sum": (
        """
        def f(xs):
            acc = ""
            for x in xs:
                acc += x  # strings: sum() refuses them
            return acc
        """,
        "f",
    ),
    "index-loop-to-iteration": (
        """
        def f(xs):
            out = []
            for i in range(len(xs)):
                out.append((i, xs[i]))  # the index itself is used
            return out
        """,
        "f",
    ),
    "precompile-regex": (
        """
        import re

        def f(lines, pattern):
            return [l for l in lines if re.match(pattern, l)]  # not a literal
        """,
        "f",
    ),
    "memoize-recursion": (
        """
        def f(items: list, n: int) -> int:
            if n == 0:
                return 0
            items.append(n)  # side effects: a cache would skip them
            return f(items, n - 1) + f(items, n - 1)
        """,
        "f",
    ),
}


def test_the_catalogue_has_at_least_fifteen_rules_each_tested_both_ways() -> None:
    assert len(RULE_IDS) >= 15
    assert set(POSITIVE) == set(RULE_IDS)
    assert set(NEGATIVE) == set(RULE_IDS)


@pytest.mark.parametrize("rule", sorted(POSITIVE))
def test_a_rule_rewrites_its_pattern_and_the_result_behaves_the_same(rule: str) -> None:
    source, function, inputs = POSITIVE[rule]
    source = textwrap.dedent(source)
    assert rule in {f.rule for f in findings(source, function)}
    single = [r for r in rewrites(source, function) if r.rules == (rule,)]
    assert len(single) == 1, f"{rule} did not rewrite"
    module = splice(source, function, single[0].code)
    assert module != source
    for args in inputs:
        assert _run(module, function, args) == _run(source, function, args), (rule, args)


@pytest.mark.parametrize("rule", sorted(NEGATIVE))
def test_a_rule_refuses_code_it_would_change(rule: str) -> None:
    source, function = NEGATIVE[rule]
    source = textwrap.dedent(source)
    assert rule not in {f.rule for f in findings(source, function)}
    assert all(rule not in r.rules for r in rewrites(source, function))


def test_combined_rewrite_applies_every_rule_that_fits_and_still_agrees() -> None:
    source = textwrap.dedent(
        """
        def report(words, stop):
            out = ""
            counts = {}
            for w in words:
                counts[w] = counts.get(w, 0) + 1
            for w in words:
                if w not in stop:
                    out += w + ":" + str(counts[w]) + ","
            return out
        """
    )
    combined = [r for r in rewrites(source, "report") if len(r.rules) > 1]
    assert len(combined) == 1
    assert {"counting-loop-to-counter", "list-membership-to-set", "string-concat-to-join"} <= set(
        combined[0].rules
    )
    module = splice(source, "report", combined[0].code)
    args = (["a", "b", "a", "the"], ["the"])
    assert _run(module, "report", args) == _run(source, "report", args)


def test_the_recursion_cache_lives_for_one_call_only() -> None:
    source, function, _ = POSITIVE["memoize-recursion"]
    code = rewrites(textwrap.dedent(source), function)[0].code
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    assert namespace[function](20, 20) == 137846528820
    assert not hasattr(namespace[function], "cache_info")  # nothing kept between calls

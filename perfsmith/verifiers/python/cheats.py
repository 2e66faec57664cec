"""Static checks for candidates that would pass by anything but being correct and fast.

Each finding names the trick, so a rejection can be fed back to the LLM. The checks read
the candidate's syntax tree only; the dynamic checks (threads or processes left running,
the harness's clock replaced, faked times) happen in the harness and the timing rounds.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from typing import NamedTuple

# Names a candidate has no business touching: the harness, the clocks, other frames.
HARNESS_NAMES = {"_perfsmith_harness", "_perfsmith_encode", "_perfsmith_target", "_clock"}
# module -> attribute -> what calling it would do
INTROSPECTION: dict[str, dict[str, str]] = {
    "sys": {
        "_getframe": "walks the interpreter's frames (can reach the harness)",
        "settrace": "installs a tracer (can rewrite the harness)",
        "setprofile": "installs a profiler hook",
    },
    "gc": {
        "get_objects": "searches the heap (can reach the harness or earlier results)",
        "get_referrers": "searches the heap (can reach the harness)",
    },
    "inspect": {
        "stack": "walks the interpreter's frames",
        "currentframe": "walks the interpreter's frames",
    },
    "os": {
        "_exit": "ends the process early (os._exit)",
        "fork": "forks a process (work can escape the clock)",
        "kill": "signals processes",
    },
    "atexit": {"register": "runs code after the harness finishes"},
    "time": {"sleep": "sleeps (measured time would not be its work)"},
}
CLOCKS = {
    "perf_counter",
    "perf_counter_ns",
    "monotonic",
    "monotonic_ns",
    "process_time",
    "process_time_ns",
    "time",
    "time_ns",
    "thread_time",
}
MODULES = {
    "ctypes": "uses ctypes (can patch anything in the process)",
    "_thread": "starts raw threads",
    "multiprocessing": "starts processes (work can escape the clock)",
    "subprocess": "starts processes",
    "signal": "handles signals",
    "pickle": "reads pickles (the harness's inputs are pickled)",
    "marshal": "loads code objects",
    "importlib": "imports modules by name (can reach the harness)",
    "builtins": "changes builtins",
}
# Modules whose attributes a candidate must not replace (the harness relies on them).
PATCHABLE_MODULES = {
    "time",
    "sys",
    "os",
    "gc",
    "builtins",
    "__builtins__",
    "math",
    "copy",
    "functools",
    "json",
}
CACHE_DECORATORS = {"cache", "lru_cache", "cached_property", "memoize"}
INPUT_FILES = ("inputs.pkl", "outputs.json", "timing.json", ".report", "cg.out")


class Finding(NamedTuple):
    """A trick found on a line of the candidate (line 0: the file as a whole)."""

    line: int
    trick: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.trick}"


def dotted_name(node: ast.AST) -> tuple[str, ...]:
    """``a.b.c`` as ('a', 'b', 'c'); () for anything that is not a dotted name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return ()


def _walk(tree: ast.AST) -> Iterator[Finding]:
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                top = name.split(".")[0]
                if top in MODULES:
                    yield Finding(line, f"imports {top}: {MODULES[top]}")
                if top in HARNESS_NAMES or top == "__main__":
                    yield Finding(line, "imports the verification harness")
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    trick = INTROSPECTION.get(node.module or "", {}).get(alias.name)
                    if trick is not None:
                        yield Finding(line, trick)
        elif isinstance(node, ast.Attribute):
            dotted = dotted_name(node)
            trick = INTROSPECTION.get(dotted[-2], {}).get(dotted[-1]) if len(dotted) >= 2 else None
            if trick is not None:
                yield Finding(line, trick)
            if node.attr in HARNESS_NAMES:
                yield Finding(line, f"touches the harness ({node.attr})")
        elif isinstance(node, ast.Name) and node.id in HARNESS_NAMES:
            yield Finding(line, f"touches the harness ({node.id})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in ("__main__",) or node.value in HARNESS_NAMES:
                yield Finding(line, "names the verification harness")
            if any(f in node.value for f in INPUT_FILES):
                yield Finding(line, f"reads the harness's files ({node.value[:40]!r})")
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                dotted = dotted_name(target)
                if len(dotted) >= 2 and dotted[0] in PATCHABLE_MODULES:
                    yield Finding(line, f"replaces {'.'.join(dotted)} (monkeypatching)")
                if dotted and dotted[-1] in CLOCKS and len(dotted) >= 2:
                    yield Finding(line, f"replaces the clock {'.'.join(dotted)}")
        elif isinstance(node, ast.Call):
            dotted = dotted_name(node.func)
            if dotted in (("setattr",), ("delattr",)) and node.args:
                patched = dotted_name(node.args[0])
                if patched and patched[0] in PATCHABLE_MODULES:
                    yield Finding(line, f"patches {patched[0]} with {dotted[0]}()")
            if dotted in (
                ("globals",),
                ("vars",),
                ("__import__",),
                ("exec",),
                ("eval",),
                ("compile",),
            ):
                yield Finding(line, f"calls {dotted[0]}() (code or namespaces by name)")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.Global):
                    yield Finding(
                        sub.lineno,
                        "keeps state in module globals across calls "
                        f"(global {', '.join(sub.names)})",
                    )


def _cached_at_module_level(tree: ast.Module) -> Iterator[Finding]:
    """A cache on a module-level function or method outlives one call: answers from
    earlier rounds would pass for speed. A cache inside the function is fine."""
    nodes: list[ast.stmt] = list(tree.body)
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        nodes += cls.body
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                dotted = dotted_name(target)
                if dotted and dotted[-1] in CACHE_DECORATORS:
                    yield Finding(
                        node.lineno,
                        f"caches results across calls (@{'.'.join(dotted)}): earlier "
                        "rounds' answers would pass for speed",
                    )


_MUTATORS = {
    "append",
    "add",
    "update",
    "setdefault",
    "extend",
    "insert",
    "__setitem__",
    "appendleft",
    "put",
}


def _module_state_mutated(tree: ast.Module) -> Iterator[Finding]:
    """A module-level container written from inside a function is a cache that outlives
    the call: the timing loops repeat inputs, so it would turn repeats into lookups."""
    containers: set[str] = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            value = stmt.value
            mutable = isinstance(
                value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)
            ) or (
                isinstance(value, ast.Call)
                and dotted_name(value.func)[-1:]
                in (
                    ("dict",),
                    ("list",),
                    ("set",),
                    ("defaultdict",),
                    ("OrderedDict",),
                    ("Counter",),
                    ("deque",),
                )
            )
            if mutable:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                containers.update(t.id for t in targets if isinstance(t, ast.Name))
    if not containers:
        return
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            name = None
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                        name = t.value.id
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _MUTATORS
                and isinstance(node.func.value, ast.Name)
            ):
                name = node.func.value.id
            if name in containers:
                yield Finding(
                    getattr(node, "lineno", fn.lineno),
                    f"keeps a cache across calls in the module-level "
                    f"{name!r} (repeated inputs would become lookups)",
                )


def static_findings(source: str) -> list[Finding]:
    """Tricks found in a candidate's source (empty when it looks honest)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return [Finding(exc.lineno or 0, f"does not parse: {exc.msg}")]
    found = {*_walk(tree), *_cached_at_module_level(tree), *_module_state_mutated(tree)}
    return sorted(found)  # by line (then by trick): the same list however they were found

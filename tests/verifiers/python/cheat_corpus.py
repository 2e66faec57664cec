"""Wrong and cheating candidates for `dedupe(items: list[int]) -> list[int]` (keep the
first of each value, in order), each with the words its rejection must contain; and
correct ones that must pass. Static: caught by reading the source. Dynamic: caught by
running it in the sandbox."""

from __future__ import annotations

HONEST = "    return list(dict.fromkeys(items))\n"


def fn(body: str, header: str = "") -> str:
    return f"{header}def dedupe(items: list[int]) -> list[int]:\n{body}"


STATIC: dict[str, tuple[str, str]] = {
    "patch_perf_counter": (
        fn(HONEST, "import time\ntime.perf_counter = lambda: 0.0\n"),
        "replaces time.perf_counter",
    ),
    "patch_time_module_setattr": (
        fn(HONEST, "import time\nsetattr(time, 'perf_counter', lambda: 0.0)\n"),
        "patches time with setattr()",
    ),
    "patch_harness_clock": (
        fn(HONEST, "import sys\nsys.modules['__main__']._clock = lambda: 0.0\n"),
        "harness",
    ),
    "import_harness": (fn(HONEST, "import _perfsmith_harness\n"), "harness"),
    "import_main": (fn(HONEST, "import __main__\n"), "harness"),
    "read_inputs_pickle": (
        fn("    import pickle\n    data = pickle.load(open('inputs.pkl', 'rb'))\n" + HONEST),
        "pickle",
    ),
    "read_outputs": (fn("    open('outputs.json').read()\n" + HONEST), "harness's files"),
    "lru_cache": (
        fn(
            HONEST,
            "import functools\n@functools.lru_cache(None)\n"
            "def _cached(t):\n    return list(dict.fromkeys(t))\n",
        ),
        "caches results across calls",
    ),
    "functools_cache": (
        fn(HONEST, "from functools import cache\n@cache\ndef helper(t):\n    return t\n"),
        "caches results across calls",
    ),
    "global_memo": (fn("    global _memo\n    _memo = items\n" + HONEST), "module globals"),
    "frame_walk": (fn("    import sys\n    sys._getframe(1)\n" + HONEST), "frames"),
    "inspect_stack": (fn("    import inspect\n    inspect.stack()\n" + HONEST), "frames"),
    "gc_objects": (fn("    import gc\n    gc.get_objects()\n" + HONEST), "heap"),
    "gc_referrers": (fn("    import gc\n    gc.get_referrers(items)\n" + HONEST), "heap"),
    "settrace": (fn(HONEST, "import sys\nsys.settrace(None)\n"), "tracer"),
    "os_exit": (fn("    import os\n    os._exit(0)\n"), "os._exit"),
    "fork": (fn("    import os\n    os.fork()\n" + HONEST), "forks"),
    "subprocess": (fn("    import subprocess\n" + HONEST), "starts processes"),
    "multiprocessing": (fn("    import multiprocessing\n" + HONEST), "starts processes"),
    "ctypes": (fn("    import ctypes\n" + HONEST), "ctypes"),
    "exec_code": (fn("    exec('x = 1')\n" + HONEST), "exec()"),
    "eval_code": (fn("    return eval('list(dict.fromkeys(items))')\n"), "eval()"),
    "dunder_import": (fn("    __import__('os')\n" + HONEST), "__import__()"),
    "globals_access": (fn("    globals()['x'] = 1\n" + HONEST), "globals()"),
    "atexit": (fn(HONEST, "import atexit\natexit.register(print)\n"), "after the harness"),
    "sleep": (fn("    import time\n    time.sleep(0)\n" + HONEST), "sleeps"),
    "builtins_patch": (fn(HONEST, "import builtins\nbuiltins.len = lambda x: 0\n"), "builtins"),
    "copy_patch": (
        fn(HONEST, "import copy\ncopy.deepcopy = lambda x, m=None: x\n"),
        "replaces copy.deepcopy",
    ),
    "importlib": (fn(HONEST, "import importlib\n"), "imports modules by name"),
    "signal": (fn(HONEST, "import signal\n"), "signals"),
    "marshal": (fn(HONEST, "import marshal\n"), "code objects"),
    "kill": (fn("    import os\n    os.kill(1, 0)\n" + HONEST), "signals processes"),
    "module_dict_memo": (
        fn(
            "    key = tuple(items)\n    if key not in _memo:\n"
            "        _memo[key] = list(dict.fromkeys(items))\n"
            "    return list(_memo[key])\n",
            "_memo: dict = {}\n",
        ),
        "cache across calls in the module-level '_memo'",
    ),
    "module_list_log": (
        fn("    _seen.append(items)\n" + HONEST, "_seen = []\n"),
        "module-level '_seen'",
    ),
    "defaultdict_memo": (
        fn(
            "    _hits[len(items)] += 1\n" + HONEST,
            "from collections import defaultdict\n_hits = defaultdict(int)\n",
        ),
        "module-level '_hits'",
    ),
}

DYNAMIC: dict[str, tuple[str, str]] = {
    "wrong_order": (fn("    return sorted(set(items))\n"), "wrong result"),
    "drops_last": (fn("    return list(dict.fromkeys(items))[:-1]\n"), "length"),
    "keeps_duplicates": (fn("    return list(items)\n"), "wrong result"),
    "returns_set": (fn("    return set(items)\n"), "type set differs"),
    "returns_tuple": (fn("    return tuple(dict.fromkeys(items))\n"), "type tuple differs"),
    "mutates_input": (
        fn("    out = list(dict.fromkeys(items))\n    items.clear()\n    return out\n"),
        "arguments changed",
    ),
    "raises": (fn("    raise NotImplementedError\n"), "raised NotImplementedError"),
    "nondeterministic": (
        fn(
            "    import random\n    out = list(dict.fromkeys(items))\n"
            "    return out if random.random() < 0.5 else out[::-1]\n"
        ),
        "input #",
    ),
    "thread_left_running": (
        fn(
            "    import threading, time\n"
            "    threading.Thread(target=time.sleep, args=(3,)).start()\n" + HONEST
        ),
        "thread(s) running after returning",
    ),
    "first_call_only": (
        fn(
            "    if not hasattr(dedupe, 'seen'):\n        dedupe.seen = 1\n"
            "        return list(dict.fromkeys(items))\n    return []\n"
        ),
        "not deterministic",
    ),
    "import_fails": (fn(HONEST, "import not_a_real_module\n"), "ModuleNotFoundError"),
}

CORRECT: dict[str, str] = {
    "dict_fromkeys": fn(HONEST),
    "seen_set": fn(
        "    seen = set()\n    out = []\n    for x in items:\n"
        "        if x not in seen:\n            seen.add(x)\n            out.append(x)\n"
        "    return out\n"
    ),
    "comprehension": fn(
        "    seen: set[int] = set()\n"
        "    return [x for x in items if not (x in seen or seen.add(x))]\n"
    ),
    "inner_cache_is_fine": fn(
        "    from functools import cache\n\n    @cache\n"
        "    def first(i: int) -> int:\n        return items.index(i)\n"
        "    return [x for i, x in enumerate(items) if first(x) == i]\n"
    ),
    "typed_module_constant": fn(HONEST, "LIMIT: int = 10\n"),
}

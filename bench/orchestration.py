"""Orchestration benchmark: perfsmith's streaming planner + task fetching unit against a
sequential ReAct loop and the critical-path lower bound, on workloads of fixed-latency
tools and a scripted LLM (a fixed latency per call plus a fixed latency per output token,
identical for every strategy).

    python bench/orchestration.py [--quick] [--out PATH] [--repeats N]

Definitions (all measured in this process, strategies interleaved per repeat, medians):
- latency_s: request -> final answer through perfsmith's LangGraph graph (planner stream,
  parser, task fetching unit, joiner); no database (see stored_latency_s for that).
- react_latency_s: one LLM call per tool call, each tool run after its call, then one
  LLM call for the answer (the same tokens as perfsmith's plan lines and joiner reply).
- critical_path_s: the lower bound for any scheduler fed by the same planner stream: each
  task starts when its line has streamed and its inputs are done, with zero overhead,
  then the joiner call.
- overhead_us_per_task: the executor's own cost per task: the same plan run with zero
  tool and LLM latency (parse, schedule, substitute, validate, invoke, complete), / tasks.
- dispatch_delay_ms: median time from a task being ready (line parsed, inputs done) to
  its tool being invoked; dispatch_delay_p99_ms its 99th percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perfsmith
from perfsmith.engine.graph import GraphDeps, build_graph
from perfsmith.executor.fetching_unit import TaskFetchingUnit
from perfsmith.llm.scripted import ScriptedChatModel, split_tokens
from perfsmith.planner.parser import parse_plan
from perfsmith.planner.plan import Join, TaskSpec, substitute
from perfsmith.planner.stream import StreamingPlanParser
from perfsmith.tools.registry import ToolRegistry, tool


@tool
async def work(task: int, inputs: list[Any] | None = None, ms: float = 0.0) -> int:
    """A tool with a fixed latency (ms); returns its task number."""
    if ms > 0:
        await asyncio.sleep(ms / 1000)
    else:
        await asyncio.sleep(0)
    return task


REGISTRY = ToolRegistry([work])


@dataclass
class Workload:
    name: str
    deps: dict[int, list[int]]  # task -> its inputs
    latency_ms: dict[int, float]
    answer: str
    llm_latency_s: float
    per_token_s: float
    max_concurrency: int = 16
    plan: str = field(init=False)

    def __post_init__(self) -> None:
        self.plan = self.render(zero=False)

    def render(self, zero: bool) -> str:
        lines = []
        for i in sorted(self.deps):
            ins = ", ".join(f"${d}" for d in self.deps[i])
            ms = 0 if zero else self.latency_ms[i]
            lines.append(f"{i}. work({i}, [{ins}], ms={ms:g})")
        return "\n".join(lines) + "\njoin()\n"

    @property
    def joiner_reply(self) -> str:
        return f"Thought: every result is in.\nAction: Finish({self.answer})"

    def llm(self, zero: bool = False) -> ScriptedChatModel:
        return ScriptedChatModel(
            {"planner": [self.plan], "joiner": [self.joiner_reply]},
            latency_s=0.0 if zero else self.llm_latency_s,
            per_token_s=0.0 if zero else self.per_token_s,
        )

    def critical_path_s(self) -> float:
        """Zero-overhead schedule driven by the same token stream."""
        tokens = split_tokens(self.plan)
        line_done: dict[int, float] = {}
        line_no = 0
        ids = sorted(self.deps)
        for count, tok in enumerate(tokens, start=1):
            t = self.llm_latency_s + count * self.per_token_s
            # a line is complete when the token carrying the next newline arrives
            if "\n" in tok and line_no < len(ids):
                line_done[ids[line_no]] = t
                line_no += 1
        plan_end = self.llm_latency_s + len(tokens) * self.per_token_s
        for i in ids[line_no:]:
            line_done[i] = plan_end
        finish: dict[int, float] = {}
        for i in ids:
            ready = max([line_done[i]] + [finish[d] for d in self.deps[i]])
            finish[i] = ready + self.latency_ms[i] / 1000
        join_call = self.llm_latency_s + len(split_tokens(self.joiner_reply)) * self.per_token_s
        return max(plan_end, max(finish.values(), default=0.0)) + join_call


def build_workloads(quick: bool) -> list[Workload]:
    # Scale of a served LLM and web-API tools: 0.3 s to first token, 100 tokens/s, 0.5 s
    # tools. --quick divides every latency by 5 (ratios barely move).
    s = 0.2 if quick else 1.0
    first_token, pt, tool_ms = 0.3 * s, 0.01 * s, 500 * s
    rng = random.Random(7)
    out = [
        Workload(
            "fanout",
            {i: [] for i in range(1, 9)},
            dict.fromkeys(range(1, 9), tool_ms),
            "eight results",
            first_token,
            pt,
        ),
        Workload(
            "diamond",
            {1: [], 2: [1], 3: [1], 4: [1], 5: [2, 3, 4]},
            {1: tool_ms, 2: tool_ms, 3: tool_ms * 1.5, 4: tool_ms * 0.5, 5: tool_ms},
            "merged",
            first_token,
            pt,
        ),
        Workload(
            "two_level",
            {
                1: [],
                2: [],
                3: [1],
                4: [1],
                5: [1],
                6: [2],
                7: [2],
                8: [2],
                9: [3, 4, 5],
                10: [6, 7, 8],
                11: [9, 10],
            },
            dict.fromkeys(range(1, 12), tool_ms),
            "two levels merged",
            first_token,
            pt,
        ),
        Workload(
            "chain",
            {i: ([i - 1] if i > 1 else []) for i in range(1, 9)},
            dict.fromkeys(range(1, 9), tool_ms),
            "end of chain",
            first_token,
            pt,
        ),
        # LLMCompiler's Movie Recommendation: 8 searches (4 liked films, 4 options) at once,
        # with uneven search latencies, then a joiner that reasons over all of them.
        Workload(
            "movie",
            {i: [] for i in range(1, 9)},
            {i: tool_ms * rng.uniform(0.6, 1.6) for i in range(1, 9)},
            "The option most similar to all four films is Option C, because "
            + " ".join(["it shares genre, era and tone with each of them"] * 3),
            first_token,
            pt,
        ),
    ]
    n = 10_000
    large_deps: dict[int, list[int]] = {}
    for i in range(1, n + 1):
        k = min(i - 1, rng.choice([0, 0, 1, 1, 2, 3]))
        large_deps[i] = sorted(rng.sample(range(max(1, i - 200), i), k)) if k else []
    out.append(
        Workload(
            "large",
            large_deps,
            dict.fromkeys(range(1, n + 1), 0.0),
            "all tasks done",
            0.0,
            0.0,
            max_concurrency=256,
        )
    )
    return out


async def run_perfsmith(w: Workload, zero: bool = False) -> tuple[float, list[float]]:
    deps = GraphDeps(
        llm=w.llm(zero),
        registry=REGISTRY,
        max_replans=0,
        max_concurrency=w.max_concurrency,
        task_timeout_s=None,
    )
    graph = build_graph(deps)
    t0 = time.perf_counter()
    final = await graph.ainvoke({"request": w.name, "rounds": []})
    elapsed = time.perf_counter() - t0
    assert final["answer"] == w.answer, final["answer"]
    rows = deps.traces[0].rows
    assert all(r.status == "done" for r in rows), [r for r in rows if r.status != "done"][:3]
    return elapsed, [r.wait_s for r in rows]


async def run_executor_only(w: Workload) -> tuple[float, float]:
    """The same DAG with zero tool latency: (parse time, schedule-and-run time).

    The second is the task fetching unit's own cost: register, resolve inputs, substitute,
    validate, start, invoke, complete and release dependents.
    """
    parser = StreamingPlanParser(REGISTRY)
    t0 = time.perf_counter()
    items = [
        i for i in parser.feed(w.render(zero=True)) + parser.close() if not isinstance(i, Join)
    ]
    t1 = time.perf_counter()
    unit = TaskFetchingUnit(REGISTRY, max_concurrency=w.max_concurrency, task_timeout_s=None)
    t2 = time.perf_counter()
    for item in items:
        unit.add(item)
    unit.close()
    await unit.wait()
    t3 = time.perf_counter()
    assert all(r.ok for r in unit.results())
    return t1 - t0, t3 - t2


async def run_react(w: Workload) -> float:
    specs = [i for i in parse_plan(w.plan, REGISTRY) if isinstance(i, TaskSpec)]
    llm = ScriptedChatModel(
        [s.line for s in specs] + [w.joiner_reply],
        latency_s=w.llm_latency_s,
        per_token_s=w.per_token_s,
    )
    results: dict[int, Any] = {}
    t0 = time.perf_counter()
    for spec in specs:  # think -> act -> observe, one tool call per LLM call
        await llm.complete([])
        args = work.validate(substitute(spec.args, results))
        results[spec.idx] = await work.invoke(args)
    await llm.complete([])
    return time.perf_counter() - t0


async def run_stored(w: Workload, db_url: str) -> float:
    t0 = time.perf_counter()
    result = await perfsmith.run(w.name, tools=[work], llm=w.llm(), database=db_url, max_replans=0)
    assert result.answer == w.answer
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


async def bench(quick: bool, repeats: int) -> dict[str, Any]:
    report: dict[str, Any] = {
        "quick": quick,
        "repeats": repeats,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cpus",
        "workloads": {},
    }
    tmp = tempfile.mkdtemp(prefix="perfsmith-bench-")
    await run_perfsmith(build_workloads(True)[0], zero=True)  # warm imports and caches
    for w in build_workloads(quick):
        n = len(w.deps)
        lat, react, stored, waits, own, parse = [], [], [], [], [], []
        for r in range(repeats):
            # interleave strategies within each repeat
            t, wait = await run_perfsmith(w)
            lat.append(t)
            waits.extend(wait)
            parse_s, own_s = await run_executor_only(w)
            parse.append(parse_s)
            own.append(own_s)
            if w.name != "large" or r == 0:
                react.append(await run_react(w))
            if w.name != "large":
                stored.append(await run_stored(w, f"sqlite:///{tmp}/bench-{w.name}-{r}.db"))
        cp = w.critical_path_s()
        med = statistics.median(lat)
        entry = {
            "tasks": n,
            "latency_s": round(med, 4),
            "react_latency_s": round(statistics.median(react), 4),
            "speedup_vs_react": round(statistics.median(react) / med, 3),
            "critical_path_s": round(cp, 4),
            "critical_path_ratio": round(med / cp, 4) if cp > 0 else None,
            "overhead_us_per_task": round(statistics.median(own) / n * 1e6, 2),
            "parse_us_per_task": round(statistics.median(parse) / n * 1e6, 2),
            "overhead_s_vs_critical_path": round(med - cp, 4),
            "dispatch_delay_ms": round(statistics.median(waits) * 1000, 4),
            "dispatch_delay_p99_ms": round(pct(waits, 0.99) * 1000, 4),
            "stored_latency_s": round(statistics.median(stored), 4) if stored else None,
            "latency_samples_s": [round(x, 4) for x in lat],
        }
        report["workloads"][w.name] = entry
        brief = {k: v for k, v in entry.items() if k != "latency_samples_s"}
        print(f"{w.name:10s} {json.dumps(brief)}", flush=True)
    report["targets"] = check_targets(report["workloads"])
    return report


def check_targets(ws: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "fanout_speedup_vs_react>=3.7": ws["fanout"]["speedup_vs_react"] >= 3.7,
        "critical_path_ratio<=1.10": all(
            (v["critical_path_ratio"] or 0) <= 1.10 for k, v in ws.items() if k != "large"
        ),
        "overhead_us_per_task<=50": all(v["overhead_us_per_task"] <= 50 for v in ws.values()),
        "large_10k_latency_s<=1": ws["large"]["latency_s"] <= 1.0,
        "dispatch_delay_ms<=5": all(v["dispatch_delay_ms"] <= 5 for v in ws.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="latencies / 5, fewer repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/results/orchestration.json"))
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    report = asyncio.run(bench(args.quick, repeats))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["targets"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Plans decoded under the plan grammar by the embedded model: speculative against plain.

The local planner decodes every plan under the plan grammar. This measures, in interleaved
rounds on one engine, greedy constrained decoding with and without drafts (the adaptive
n-gram drafter): tokens per second, forward passes, and whether the outputs are the same
token for token. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from perfsmith.inference import models
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.constrain import ConstraintSpec
from perfsmith.inference.sampling import SamplingParams
from perfsmith.planner.grammar import plan_grammar
from perfsmith.planner.prompts import planner_messages
from perfsmith.tools.demo import TOOLS
from perfsmith.tools.registry import ToolRegistry

REQUESTS = [
    "Time three ways to sum a list of a million ints and rank them.",
    "Compare a list comprehension, map and a for loop squaring 10,000 ints; rank them.",
    "Time sorted() against list.sort() on 100,000 random floats and rank them.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/results/constrained.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(4, torch.get_num_threads()))
    rounds = 2 if args.quick else 3
    max_tokens = 200 if args.quick else 600

    registry = ToolRegistry(TOOLS)
    grammar = ConstraintSpec("grammar", plan_grammar(registry))
    engine = build_engine(EngineConfig(context=2048), loaded=models.load("embedded"))
    prompts = [
        engine.encode_chat([m.model_dump() for m in planner_messages(r, registry, [])])
        for r in REQUESTS
    ]
    params = SamplingParams(max_tokens=max_tokens)
    engine.generate(prompts[0], SamplingParams(max_tokens=8), constraint=grammar)  # warm up

    rates: dict[str, list[float]] = {"plain": [], "speculative": []}
    passes: dict[str, int] = {"plain": 0, "speculative": 0}
    tokens: dict[str, list[list[int]]] = {}
    for r in range(rounds):
        for name, speculate in (("plain", False), ("speculative", True)):
            made, seconds, outs = 0, 0.0, []
            for prompt in prompts:
                started = time.perf_counter()
                gen = engine.generate(prompt, params, constraint=grammar, speculate=speculate)
                seconds += time.perf_counter() - started
                made += len(gen.tokens)
                if r == 0:
                    passes[name] += gen.stats.forward_passes
                outs.append(gen.tokens)
            rates[name].append(made / seconds)
            tokens[name] = outs
        print(
            f"round {r + 1}/{rounds}: plain {rates['plain'][-1]:.1f} tok/s, "
            f"speculative {rates['speculative'][-1]:.1f} tok/s",
            flush=True,
        )
    plain, fast = statistics.median(rates["plain"]), statistics.median(rates["speculative"])
    result: dict[str, Any] = {
        "model": "embedded",
        "rounds": rounds,
        "max_tokens": max_tokens,
        "requests": REQUESTS,
        "tokens_per_request": [len(t) for t in tokens["plain"]],
        "plain_tokens_per_s": rates["plain"],
        "speculative_tokens_per_s": rates["speculative"],
        "median_plain_tokens_per_s": plain,
        "median_speculative_tokens_per_s": fast,
        "speedup": fast / plain,
        "identical": tokens["plain"] == tokens["speculative"],
        "forward_passes": passes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"plain {plain:.1f} tok/s, speculative {fast:.1f} tok/s: {fast / plain:.2f}x, "
        f"identical: {result['identical']}"
    )


if __name__ == "__main__":
    main()

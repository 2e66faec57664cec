"""Quality of a (compressed) model, on text no calibration step saw: perplexity on Python
source files of the standard library, and agreement with the uncompressed model's greedy
tokens under teacher forcing."""

from __future__ import annotations

import math
import sysconfig
from pathlib import Path

import torch

from perfsmith.inference.runner import Runner

# Calibration (layer ranking) and evaluation read disjoint files.
CALIBRATION_FILES = ("json/encoder.py", "json/decoder.py", "csv.py")
HELDOUT_FILES = ("textwrap.py", "heapq.py", "bisect.py", "fractions.py", "shlex.py")


def stdlib_text(names: tuple[str, ...]) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = []
    for name in names:
        path = root / name
        if path.is_file():
            parts.append(path.read_text(encoding="utf-8"))
    if not parts:
        raise FileNotFoundError(f"none of {names} found under {root}")
    return "\n\n".join(parts)


def chunks(tokens: list[int], size: int, limit: int | None = None) -> list[list[int]]:
    out = [tokens[i : i + size] for i in range(0, len(tokens) - 1, size)]
    out = [c for c in out if len(c) > 1]
    return out[:limit] if limit is not None else out


@torch.inference_mode()
def perplexity(runner: Runner, pieces: list[list[int]]) -> float:
    """exp of the mean next-token cross-entropy over every position of every piece."""
    total, count = 0.0, 0
    size = max(len(p) for p in pieces)
    cache = runner.new_cache(1, size + 1)
    for piece in pieces:
        slot = cache.acquire()  # emptied
        logits = runner.forward(cache, [slot], torch.tensor([piece]))[0]
        cache.release(slot)
        loss = torch.nn.functional.cross_entropy(
            logits[:-1], torch.tensor(piece[1:]), reduction="sum"
        )
        total += float(loss)
        count += len(piece) - 1
    return math.exp(total / count)


@torch.inference_mode()
def greedy_targets(runner: Runner, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """The runner's greedy continuation of each prompt (one token per pass)."""
    outs = []
    for prompt in prompts:
        cache = runner.new_cache(1, len(prompt) + new_tokens + 1)
        slot = cache.acquire()
        logits = runner.forward(cache, [slot], torch.tensor([prompt]), last_only=True)[0, -1]
        seq: list[int] = []
        for _ in range(new_tokens):
            token = int(torch.argmax(logits))
            seq.append(token)
            logits = runner.forward(cache, [slot], torch.tensor([[token]]))[0, -1]
        outs.append(seq)
    return outs


@torch.inference_mode()
def agreement(runner: Runner, prompts: list[list[int]], targets: list[list[int]]) -> float:
    """Fraction of positions where ``runner``'s argmax, fed the reference's tokens, is the
    reference's greedy token."""
    agree, total = 0, 0
    for prompt, target in zip(prompts, targets, strict=True):
        seq = prompt + target
        cache = runner.new_cache(1, len(seq) + 1)
        slot = cache.acquire()
        logits = runner.forward(cache, [slot], torch.tensor([seq[:-1]]))[0]
        predicted = torch.argmax(logits[len(prompt) - 1 :], dim=-1).tolist()
        agree += sum(int(a == b) for a, b in zip(predicted, target, strict=True))
        total += len(target)
    return agree / total if total else 1.0

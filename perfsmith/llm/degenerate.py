"""Degenerate model output: small models fall into loops (the same sentence twenty times,
a phrase repeated to the token limit). Such text is cut back to its first occurrence and
flagged, so that a report or a chat shows what was said once."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*\s*|\n+")
# a phrase loop: the same 1..12 words four times or more in a row
_MAX_GRAM = 12
_MIN_REPEATS = 4


@dataclass(frozen=True)
class Cut:
    text: str
    cut: bool  # True when repetition was removed


def _norm(sentence: str) -> str:
    return " ".join(sentence.lower().split())


def _drop_repeated_sentences(text: str) -> tuple[str, bool]:
    seen: set[str] = set()
    kept: list[str] = []
    dropped = 0
    for piece in _SENTENCE.findall(text):
        key = _norm(piece)
        if len(key) >= 8 and key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(piece)
    return "".join(kept), dropped > 0


def _cut_phrase_loop(text: str) -> tuple[str, bool]:
    words = text.split()
    n = len(words)
    for i in range(n):
        for gram in range(1, _MAX_GRAM + 1):
            end = i + gram * _MIN_REPEATS
            if end > n:
                break
            unit = words[i : i + gram]
            if all(
                words[i + k * gram : i + (k + 1) * gram] == unit for k in range(1, _MIN_REPEATS)
            ):
                return " ".join(words[: i + gram]), True
    return text, False


def cut_repetition(text: str) -> Cut:
    """``text`` without repeated sentences and phrase loops."""
    first, cut1 = _drop_repeated_sentences(text)
    second, cut2 = _cut_phrase_loop(first) if len(first.split()) >= _MIN_REPEATS else (first, False)
    if not (cut1 or cut2):
        return Cut(text, False)
    return Cut(second.strip() + " [repetition cut]", True)

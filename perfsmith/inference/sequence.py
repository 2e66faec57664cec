"""One request's decoding state: its tokens, stop handling, text deltas and statistics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from perfsmith.inference.constrain import Constraint
from perfsmith.inference.drafters import Drafter
from perfsmith.inference.sampling import SamplingParams


@dataclass
class DecodeStats:
    forward_passes: int = 0
    drafted: int = 0
    accepted: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    shared_prefix: int = 0  # prompt positions read from another sequence's cache

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


@dataclass
class Sequence:
    prompt: list[int]
    params: SamplingParams
    eos_ids: frozenset[int]
    decode: Callable[[list[int]], str]
    constraint: Constraint | None = None
    drafter: Drafter | None = None
    on_text: Callable[[str], None] | None = None
    slot: int = -1
    tokens: list[int] = field(default_factory=list)
    last: int = -1  # the newest token, not yet in the KV cache
    finish_reason: str | None = None
    text: str = ""
    stats: DecodeStats = field(default_factory=DecodeStats)
    generator: torch.Generator | None = None
    cancelled: bool = False
    _emitted: int = 0
    _hold: int = 0
    error: BaseException | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)
        self._hold = max((len(s) for s in self.params.stop), default=1) - 1
        self.last = self.prompt[-1]

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def context(self) -> list[int]:
        return self.prompt + self.tokens

    @property
    def remaining(self) -> int:
        return self.params.max_tokens - len(self.tokens)

    def push(self, new: list[int]) -> None:
        """Append generated tokens, stopping at EOS, a stop string or max_tokens."""
        for token in new:
            if token in self.eos_ids:
                self.finish("stop")
                return
            if self.constraint is not None and not self.constraint.accept(token):
                self.finish("stop")
                return
            self.tokens.append(token)
            self.last = token
            if self.params.stop and self._check_stop():
                return
            if self.constraint is not None and self.constraint.finished:
                self.finish("stop")
                return
            if len(self.tokens) >= self.params.max_tokens:
                self.finish("length")
                return
        self._flush(final=False)

    def _check_stop(self) -> bool:
        text = self.decode(self.tokens)
        window = max(0, self._emitted - self._hold)
        cut = min(
            (i for i in (text.find(s, window) for s in self.params.stop) if i >= 0), default=-1
        )
        if cut >= 0:
            self.text = text[:cut]
            self.finish("stop", decoded=True)
            return True
        return False

    def finish(self, reason: str, *, decoded: bool = False) -> None:
        if self.finish_reason is not None:
            return
        self.finish_reason = reason
        if not decoded:
            self.text = self.decode(self.tokens)
        self._flush(final=True)

    def _flush(self, *, final: bool) -> None:
        if not final:
            self.text = self.decode(self.tokens)
        end = len(self.text)
        if not final:
            end -= self._hold
            while end > self._emitted and self.text[end - 1] == "\ufffd":
                end -= 1  # an incomplete UTF-8 sequence: wait for its next byte
        if end > self._emitted:
            delta = self.text[self._emitted : end]
            self._emitted = end
            if self.on_text is not None:
                self.on_text(delta)

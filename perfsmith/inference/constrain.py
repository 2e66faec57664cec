"""Constrained decoding: output that matches a JSON schema or a grammar (EBNF, as
xgrammar reads it). Tokens the constraint forbids get their logits set to -inf before
sampling, so the output always parses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from perfsmith.errors import PerfsmithError


class ConstraintError(PerfsmithError):
    """A schema or grammar that cannot be compiled."""


@dataclass(frozen=True)
class ConstraintSpec:
    """What the output must match: ``kind`` is ``json_schema``, ``json`` (any JSON object)
    or ``grammar`` (EBNF, root rule ``root``)."""

    kind: str
    text: str = ""


class Constraint:
    """One sequence's position in a compiled grammar."""

    def __init__(self, matcher: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)

    def mask(self, logits: torch.Tensor) -> None:
        """Forbid, in place, every token of ``[vocab]`` logits the grammar does not allow."""
        self.matcher.fill_next_token_bitmask(self._bitmask)
        view = logits.view(1, -1)
        width = min(view.shape[-1], self.vocab_size)
        self._xgr.apply_token_bitmask_inplace(view[:, :width], self._bitmask)
        if view.shape[-1] > width:
            view[:, width:] = float("-inf")

    def mask_along(self, logits: torch.Tensor, draft: list[int]) -> int:
        """Forbid, in place, what the grammar does not allow in each row of ``[k + 1,
        vocab]`` logits, row i being the position after draft tokens ``draft[:i]``; the
        grammar is walked along the draft and put back where it was. Returns how many
        draft tokens the grammar accepts (rows past the first it refuses are not masked:
        they follow a token that cannot be generated)."""
        valid = 0
        rows = self._xgr.allocate_token_bitmask(len(draft) + 1, self.vocab_size)
        self.matcher.fill_next_token_bitmask(rows, 0)
        for token in draft:
            if self.matcher.is_terminated() or not self.matcher.accept_token(token):
                break
            valid += 1
            self.matcher.fill_next_token_bitmask(rows, valid)
        if valid:
            self.matcher.rollback(valid)
        view = logits[: valid + 1]
        width = min(view.shape[-1], self.vocab_size)
        self._xgr.apply_token_bitmask_inplace(view[:, :width], rows[: valid + 1])
        if view.shape[-1] > width:
            view[:, width:] = float("-inf")
        return valid

    def greedy_along(self, logits: torch.Tensor, draft: list[int]) -> tuple[int, int]:
        """Greedy verification of ``draft`` under the grammar, row by row of ``[k + 1,
        vocab]`` logits: each row masked as plain constrained decoding would mask it, only
        as far as the draft holds (no mask is computed for rows after a rejected token).
        Returns (draft tokens accepted, the token after them); the grammar is put back."""
        accepted = 0
        while True:
            self.mask(logits[accepted])
            best = int(torch.argmax(logits[accepted]))
            if (
                accepted == len(draft)
                or best != draft[accepted]
                or self.matcher.is_terminated()
                or not self.matcher.accept_token(best)
            ):
                break
            accepted += 1
        if accepted:
            self.matcher.rollback(accepted)
        return accepted, best

    def accept(self, token: int) -> bool:
        return bool(self.matcher.accept_token(token))

    @property
    def finished(self) -> bool:
        return bool(self.matcher.is_terminated())


class ConstraintCompiler:
    """Compiles schemas and grammars against one tokenizer (compiled grammars are cached)."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        self._xgr = xgr
        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self._compiler = xgr.GrammarCompiler(info, max_threads=2)
        self._compiled: dict[ConstraintSpec, Any] = {}

    def compile(self, spec: ConstraintSpec) -> Constraint:
        compiled = self._compiled.get(spec)
        if compiled is None:
            try:
                # Compact JSON: with free whitespace a small model can emit newlines forever.
                if spec.kind == "json":
                    compiled = self._compiler.compile_json_schema(
                        '{"type": "object"}', any_whitespace=False, strict_mode=False
                    )
                elif spec.kind == "json_schema":
                    json.loads(spec.text)
                    compiled = self._compiler.compile_json_schema(spec.text, any_whitespace=False)
                elif spec.kind == "grammar":
                    compiled = self._compiler.compile_grammar(spec.text)
                else:
                    raise ConstraintError(f"unknown constraint kind {spec.kind!r}")
            except ConstraintError:
                raise
            except (ValueError, RuntimeError, TypeError) as exc:
                raise ConstraintError(f"invalid {spec.kind}: {exc}") from exc
            self._compiled[spec] = compiled
        return Constraint(self._xgr.GrammarMatcher(compiled), self.vocab_size)

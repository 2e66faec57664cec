"""The decode loop: prefill, speculative steps for a lone sequence, batched steps for
several, all over one slot KV cache.

A speculative step feeds ``[last] + draft`` through the target in one forward pass: row i
of the logits is the target's prediction after the i-th fed token. Greedy decoding keeps
the longest draft prefix the target's argmax agrees with, then the target's own next
token, so its output is the target's greedy output; sampling uses the speculative
sampling rule (:func:`perfsmith.inference.sampling.accept_draft`). Rejected tokens leave
the cache by truncating the slot. Under a grammar or schema the draft is checked as far as
the grammar allows it and every row is masked as plain constrained decoding masks it
(:meth:`perfsmith.inference.constrain.Constraint.mask_along`): constrained output (plans
from the local planner) is speculative too, and the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import torch

from perfsmith.errors import PerfsmithError
from perfsmith.inference.constrain import ConstraintCompiler, ConstraintSpec
from perfsmith.inference.drafters import Drafter
from perfsmith.inference.kv_cache import SlotCache
from perfsmith.inference.runner import Runner
from perfsmith.inference.sampling import SamplingParams, accept_draft, pick, probabilities
from perfsmith.inference.sequence import DecodeStats, Sequence


class DecodeOptions(TypedDict, total=False):
    """How one request decodes, beyond its prompt and sampling parameters."""

    constraint: ConstraintSpec | None  # a grammar or JSON schema the output must follow
    speculate: bool  # draft tokens with the engine's drafter (True)


class RequestError(PerfsmithError):
    """A request the engine cannot serve as asked (too long, bad template, bad grammar)."""


@dataclass
class Generation:
    text: str
    tokens: list[int]
    prompt_tokens: int
    finish_reason: str
    stats: DecodeStats

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.stats.decode_s if self.stats.decode_s > 0 else 0.0


class ChatTemplateError(RequestError):
    pass


class Engine:
    """A loaded model ready to decode: runner, tokenizer, drafter and constraint compiler."""

    def __init__(
        self,
        runner: Runner,
        tokenizer: Any,
        *,
        name: str,
        drafter_factory: Callable[[], Drafter] | None = None,
        eos_ids: set[int] | None = None,
        chat_template: str | None = None,
        context: int = 2048,
        slots: int = 8,
        share_prefixes: bool = True,
    ) -> None:
        """``share_prefixes``: a request whose prompt begins as an earlier, still cached
        one's reads that prefix's keys and values from it instead of computing them
        (runners that can: the native layers on an fp32 cache)."""
        self.runner = runner
        self.tokenizer = tokenizer
        self.name = name
        self.drafter_factory = drafter_factory
        self.context = min(context, runner.max_context)
        self.slots = slots if runner.batched else 1
        ids = set(eos_ids or ())
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        self.eos_ids = frozenset(ids)
        self.chat_template = chat_template
        self._compiler: ConstraintCompiler | None = None
        self._lock = threading.Lock()
        self._cache: SlotCache | None = None
        self.share_prefixes = share_prefixes and bool(getattr(runner, "shares_prefixes", False))

    # -- text ------------------------------------------------------------------------

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        template = self.chat_template or getattr(self.tokenizer, "chat_template", None)
        if not template:
            raise ChatTemplateError(
                f"model {self.name} has no chat template: pass one (--chat-template FILE)"
            )
        try:
            text = self.tokenizer.apply_chat_template(
                messages, chat_template=template, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # jinja errors: the template rejects these messages
            raise ChatTemplateError(f"the chat template rejected the messages: {exc}") from exc
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, tokens: list[int]) -> str:
        return str(self.tokenizer.decode(tokens, skip_special_tokens=True))

    def constraint(self, spec: ConstraintSpec | None) -> Any:
        if spec is None:
            return None
        if self._compiler is None:
            self._compiler = ConstraintCompiler(self.tokenizer, self.runner.vocab_size)
        return self._compiler.compile(spec)

    def check_length(self, prompt: list[int]) -> None:
        if not prompt:
            raise RequestError("the prompt is empty")
        if len(prompt) >= self.context:
            raise RequestError(
                f"the prompt has {len(prompt)} tokens; this server's context is "
                f"{self.context} tokens"
            )

    def new_sequence(
        self,
        prompt: list[int],
        params: SamplingParams,
        *,
        constraint: ConstraintSpec | None = None,
        speculate: bool = True,
        on_text: Callable[[str], None] | None = None,
    ) -> Sequence:
        self.check_length(prompt)
        drafter = None
        if speculate and self.drafter_factory is not None:
            drafter = self.drafter_factory()
        return Sequence(
            prompt=prompt,
            params=params,
            eos_ids=self.eos_ids,
            decode=self.decode,
            constraint=self.constraint(constraint),
            drafter=drafter,
            on_text=on_text,
        )

    # -- steps -----------------------------------------------------------------------

    def prefill(self, cache: SlotCache, seq: Sequence) -> None:
        """Put the prompt but its last token in a slot of ``cache`` (the last is fed by the
        first step); a prefix another slot holds is read from there, not computed."""
        started = time.perf_counter()
        seq.slot = cache.acquire()
        fed = seq.prompt[:-1]
        start = cache.share(seq.slot, fed) if self.share_prefixes else 0
        seq.stats.shared_prefix = start
        if len(fed) > start:
            self.runner.forward(cache, [seq.slot], torch.tensor([fed[start:]]), last_only=True)
            seq.stats.forward_passes += 1
        if self.share_prefixes:
            cache.hold(seq.slot, fed)
        seq.stats.prefill_s += time.perf_counter() - started

    def _room(self, cache: SlotCache, seq: Sequence) -> int:
        """Tokens this sequence may still generate: prompt + output fit the context (the
        cache holds all but the newest token)."""
        return cache.capacity - cache.lengths[seq.slot] - 1

    def step(self, cache: SlotCache, seq: Sequence) -> None:
        """One forward pass for one sequence: speculative when it has a drafter."""
        started = time.perf_counter()
        room = self._room(cache, seq)
        if room < 1:
            seq.finish("length")
            return
        draft: list[int] = []
        draft_probs = None
        if seq.drafter is not None:
            draft, draft_probs = seq.drafter.propose(seq.context)
            limit = min(room, seq.remaining) - 1
            if len(draft) > limit:
                draft = draft[: max(limit, 0)]
                draft_probs = None if draft_probs is None else draft_probs[: len(draft)]
        base = cache.lengths[seq.slot]
        fed = torch.tensor([[seq.last, *draft]])
        logits = self.runner.forward(cache, [seq.slot], fed)[0]
        seq.stats.forward_passes += 1
        new = self._verified(seq, logits, draft, draft_probs)
        if draft:
            seq.stats.drafted += len(draft)
            seq.stats.accepted += len(new) - 1
            assert seq.drafter is not None
            seq.drafter.feedback(len(draft), len(new) - 1)
        # keep [last, accepted drafts] in the cache; the newest token is fed next step
        cache.truncate(seq.slot, base + len(new))
        seq.push(new)
        seq.stats.decode_s += time.perf_counter() - started

    def _verified(
        self,
        seq: Sequence,
        logits: torch.Tensor,
        draft: list[int],
        draft_probs: torch.Tensor | None,
    ) -> list[int]:
        """What a step adds: the draft prefix the target accepts and the token after it
        (``logits``: ``[len(draft) + 1, vocab]``, row i after the i-th fed token)."""
        if seq.constraint is not None and seq.params.greedy:
            # each row masked as plain constrained decoding masks it: the same output
            accepted, nxt = seq.constraint.greedy_along(logits, draft)
            return [*draft[:accepted], nxt]
        if seq.constraint is not None:  # the draft only as far as the grammar allows it
            valid = seq.constraint.mask_along(logits, draft)
            draft = draft[:valid]
            draft_probs = None if draft_probs is None else draft_probs[:valid]
            logits = logits[: valid + 1]
        if not draft:
            return [pick(logits[0], seq.params, seq.generator)]
        if seq.params.greedy:
            predicted = torch.argmax(logits, dim=-1).tolist()
            accepted = 0
            while accepted < len(draft) and predicted[accepted] == draft[accepted]:
                accepted += 1
            return [*draft[:accepted], predicted[accepted]]
        probs = probabilities(logits, seq.params)
        accepted, nxt = accept_draft(probs, draft, draft_probs, seq.generator)
        return [*draft[:accepted], nxt]

    def batch_step(self, cache: SlotCache, seqs: list[Sequence]) -> None:
        """One token for each of several sequences in one forward pass."""
        started = time.perf_counter()
        for seq in seqs:
            if self._room(cache, seq) < 1:
                seq.finish("length")
        live = [s for s in seqs if not s.done]
        if not live:
            return
        fed = torch.tensor([[s.last] for s in live])
        logits = self.runner.forward(cache, [s.slot for s in live], fed)[:, 0]
        elapsed = time.perf_counter() - started
        for row, seq in enumerate(live):
            seq.stats.forward_passes += 1
            if seq.constraint is not None:
                seq.constraint.mask(logits[row])
            seq.push([pick(logits[row], seq.params, seq.generator)])
            seq.stats.decode_s += elapsed

    # -- whole generations -----------------------------------------------------------

    def _own_cache(self) -> SlotCache:
        if self._cache is None:
            self._cache = self.runner.new_cache(1, self.context)
        return self._cache

    def generate(
        self,
        prompt: list[int],
        params: SamplingParams | None = None,
        *,
        constraint: ConstraintSpec | None = None,
        speculate: bool = True,
    ) -> Generation:
        """Decode one sequence in the calling thread."""
        seq = self.new_sequence(
            prompt, params or SamplingParams(), constraint=constraint, speculate=speculate
        )
        with self._lock:
            cache = self._own_cache()
            if seq.drafter is not None:
                seq.drafter.reset()
            self.prefill(cache, seq)
            try:
                while not seq.done:
                    self.step(cache, seq)
            finally:
                cache.release(seq.slot)
        return Generation(seq.text, seq.tokens, len(prompt), seq.finish_reason or "stop", seq.stats)


@dataclass
class _Request:
    seq: Sequence
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[str, Any]]


class Scheduler:
    """Serves concurrent requests from one engine thread: new requests are prefilled as
    slots free up, a lone sequence decodes speculatively, and several decode together,
    one token each per forward pass (continuous batching)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._waiting: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="perfsmith-engine", daemon=True)
        self._thread.start()
        self.batch_sizes: list[int] = []

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    async def stream(
        self, prompt: list[int], params: SamplingParams, **options: Unpack[DecodeOptions]
    ) -> AsyncIterator[tuple[str, Any]]:
        """Events: ``("text", delta)`` ... then ``("done", Generation)``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def on_text(delta: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("text", delta))

        seq = self.engine.new_sequence(prompt, params, on_text=on_text, **options)
        request = _Request(seq, loop, queue)
        with self._cond:
            if self._stopped:
                raise RequestError("the engine is shut down")
            self._waiting.append(request)
            self._cond.notify_all()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise value
                yield kind, value
                if kind == "done":
                    return
        finally:
            seq.cancelled = True

    async def complete(
        self, prompt: list[int], params: SamplingParams, **options: Unpack[DecodeOptions]
    ) -> Generation:
        async for kind, value in self.stream(prompt, params, **options):
            if kind == "done":
                result: Generation = value
                return result
        raise RequestError("generation ended without a result")

    def _finish(self, request: _Request, error: BaseException | None = None) -> None:
        seq = request.seq
        if error is not None:
            event: tuple[str, Any] = ("error", error)
        else:
            event = (
                "done",
                Generation(
                    seq.text, seq.tokens, len(seq.prompt), seq.finish_reason or "stop", seq.stats
                ),
            )
        with contextlib.suppress(RuntimeError):  # the client's loop is gone
            request.loop.call_soon_threadsafe(request.queue.put_nowait, event)

    def _run(self) -> None:
        engine = self.engine
        cache = engine.runner.new_cache(engine.slots, engine.context)
        active: list[_Request] = []
        while True:
            with self._cond:
                while not self._stopped and not self._waiting and not active:
                    self._cond.wait()
                if self._stopped:
                    for request in [*active, *self._waiting]:
                        self._finish(request, RequestError("the engine is shut down"))
                    return
                admitted = []
                while self._waiting and cache.free_slots:
                    admitted.append(self._waiting.popleft())
            for request in admitted:
                try:
                    engine.prefill(cache, request.seq)
                    active.append(request)
                except Exception as exc:
                    if request.seq.slot >= 0:
                        cache.release(request.seq.slot)
                    self._finish(request, exc)
            for request in active:
                if request.seq.cancelled and not request.seq.done:
                    request.seq.finish("cancelled")
            live = [r for r in active if not r.seq.done]
            try:
                if len(live) == 1 or (live and not engine.runner.batched):
                    for request in live:
                        engine.step(cache, request.seq)
                    self.batch_sizes.append(1)
                elif live:
                    engine.batch_step(cache, [r.seq for r in live])
                    self.batch_sizes.append(len(live))
            except Exception as exc:
                for request in live:
                    request.seq.finish("error")
                    request.seq.error = exc
            still: list[_Request] = []
            for request in active:
                if request.seq.done:
                    cache.release(request.seq.slot)
                    self._finish(request, request.seq.error)
                else:
                    still.append(request)
            active = still

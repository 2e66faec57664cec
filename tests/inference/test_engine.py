"""Speculative decoding is lossless under greedy decoding, for every drafter and
compression; stop sequences, max_tokens and seeds behave as the API promises."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from perfsmith.inference import native
from perfsmith.inference.engine import Engine, Generation, RequestError
from perfsmith.inference.sampling import SamplingParams
from tests.inference.conftest import PROMPTS

MakeEngine = Callable[..., Engine]
# greedy generations without speculation on the uncompressed model, by (prompt, length)
PLAIN: dict[tuple[tuple[int, ...], int], Generation] = {}


def _act8() -> bool:
    lib = native.library()
    return lib is not None and native.act8(lib)


@pytest.mark.slow(seconds=20)
@pytest.mark.parametrize("speculate", ["ngram", "adaptive", "draft"])
def test_greedy_speculation_is_token_for_token_the_target_greedy_output(
    engine_for: MakeEngine, speculate: str
) -> None:
    engine = engine_for("none", speculate)
    drafted = 0
    for text in PROMPTS[:2] if speculate == "draft" else PROMPTS:
        prompt = engine.encode_chat([{"role": "user", "content": text}])
        params = SamplingParams(max_tokens=48 if speculate == "draft" else 64)
        # the target's own greedy output does not depend on the drafter: computed once
        key = (tuple(prompt), params.max_tokens)
        if key not in PLAIN:
            PLAIN[key] = engine.generate(prompt, params, speculate=False)
        plain = PLAIN[key]
        fast = engine.generate(prompt, params, speculate=True)
        assert fast.tokens == plain.tokens, text
        assert fast.text == plain.text
        assert plain.stats.drafted == 0
        drafted += fast.stats.drafted
        # a speculative run needs no more passes than tokens (fewer where drafts landed)
        assert fast.stats.forward_passes <= plain.stats.forward_passes
    assert drafted > 0


@pytest.mark.parametrize(
    "compress",
    [
        "drop=2",
        "int8",
        pytest.param(
            "bf16",
            marks=pytest.mark.skipif(
                native.library() is None,
                reason="bf16 is lossless on the native kernels only (AVX-512 and a C compiler)",
            ),
        ),
        pytest.param(
            "act8",
            marks=pytest.mark.skipif(
                not _act8(), reason="int8 activations need AVX-512 VNNI and the native kernels"
            ),
        ),
    ],
)
def test_speculation_stays_lossless_on_compressed_models(
    engine_for: MakeEngine, compress: str
) -> None:
    """Every weight type on the native kernels (fp32 activations, or with act8 int8 ones
    quantized per row; fixed accumulation order): a row's result does not depend on the
    other rows in the pass. (bench/inference.py reports `identical_to_greedy` for every
    configuration.)"""
    engine = engine_for(compress, "adaptive")
    if compress == "act8":  # every weight of the file (Q4_1, Q8_0) on int8 activations
        runner = engine.runner
        assert runner.act8_used == runner.file_weights_used == 211  # type: ignore[attr-defined]
    # one copy-heavy prompt: drafts land, so accepted and rejected drafts both occur
    for text in PROMPTS[:1]:
        prompt = engine.encode_chat([{"role": "user", "content": text}])
        params = SamplingParams(max_tokens=40)
        plain = engine.generate(prompt, params, speculate=False)
        fast = engine.generate(prompt, params, speculate=True)
        assert fast.tokens == plain.tokens
        assert fast.stats.drafted > 0


def test_copy_heavy_prompts_accept_most_drafts_and_take_fewer_passes(
    engine_for: MakeEngine,
) -> None:
    engine = engine_for("none", "adaptive")
    prompt = engine.encode_chat([{"role": "user", "content": PROMPTS[0]}])
    gen = engine.generate(prompt, SamplingParams(max_tokens=120))
    assert gen.stats.acceptance_rate is not None and gen.stats.acceptance_rate > 0.5
    assert gen.stats.forward_passes < len(gen.tokens) / 2


def test_stop_sequences_cut_the_text_and_max_tokens_bounds_it(engine_for: MakeEngine) -> None:
    engine = engine_for("none", "adaptive")
    prompt = engine.encode_chat([{"role": "user", "content": PROMPTS[0]}])
    full = engine.generate(prompt, SamplingParams(max_tokens=60), speculate=False)
    assert "(" in full.text
    stop = full.text[full.text.index("(") : full.text.index("(") + 3]
    cut = engine.generate(prompt, SamplingParams(max_tokens=60, stop=(stop,)))
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    short = engine.generate(prompt, SamplingParams(max_tokens=5))
    assert len(short.tokens) == 5 and short.finish_reason == "length"
    assert short.tokens == full.tokens[:5]


def test_seeded_sampling_repeats_and_speculative_sampling_varies_with_the_seed(
    engine_for: MakeEngine,
) -> None:
    engine = engine_for("none", "adaptive")
    prompt = engine.encode_chat([{"role": "user", "content": PROMPTS[2]}])
    a = engine.generate(prompt, SamplingParams(max_tokens=30, temperature=0.9, seed=7))
    b = engine.generate(prompt, SamplingParams(max_tokens=30, temperature=0.9, seed=7))
    outs = {
        tuple(
            engine.generate(prompt, SamplingParams(max_tokens=30, temperature=0.9, seed=s)).tokens
        )
        for s in range(4)
    }
    assert a.tokens == b.tokens
    assert len(outs) > 1


def test_too_long_and_empty_prompts_are_refused(engine_for: MakeEngine) -> None:
    engine = engine_for("none", "adaptive")
    with pytest.raises(RequestError, match="context"):
        engine.generate(list(range(100, 100 + engine.context)))
    with pytest.raises(RequestError, match="empty"):
        engine.generate([])


def test_generation_stops_at_the_context_end(engine_for: MakeEngine) -> None:
    engine = engine_for("none", "adaptive")
    prompt = engine.encode(PROMPTS[0])
    prompt = (prompt * (engine.context // len(prompt)))[: engine.context - 10]
    gen = engine.generate(prompt, SamplingParams(max_tokens=100))
    assert gen.finish_reason == "length"
    assert len(prompt) + len(gen.tokens) <= engine.context

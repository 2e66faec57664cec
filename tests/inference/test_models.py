"""Model resolution, the safetensors cache of dequantized GGUF weights, chat templates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from perfsmith.errors import ConfigError
from perfsmith.inference import models
from perfsmith.inference.build import build_engine
from perfsmith.inference.config import EngineConfig
from perfsmith.inference.engine import ChatTemplateError
from perfsmith.inference.llama_runner import LlamaRunner


def test_the_embedded_model_is_found_in_its_package() -> None:
    source = models.resolve("embedded")
    assert source.kind == "gguf" and source.path.is_file()
    assert source.path.name.endswith(".gguf")


def test_unknown_models_and_wrong_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        models.resolve("nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"not a \.gguf file or a HuggingFace model directory"):
        models.resolve(str(tmp_path / "empty"))


@pytest.mark.slow(seconds=20)
def test_gguf_conversion_is_cached_and_the_cache_loads_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loaded: models.LoadedModel
) -> None:
    monkeypatch.setenv("PERFSMITH_CACHE_DIR", str(tmp_path / "cache"))
    cold = models.load("embedded")
    assert not cold.from_cache
    converted = models.converted_dir(models.resolve("embedded"))
    assert (converted / "model.safetensors").is_file()
    warm = models.load("embedded")
    assert warm.from_cache
    ids = torch.tensor([[1, 500, 900, 42]])
    with torch.inference_mode():
        a = cold.model(ids).logits
        b = warm.model(ids).logits
    assert torch.equal(a, b)


def test_the_fast_runner_reproduces_the_transformers_forward_pass(
    loaded: models.LoadedModel,
) -> None:
    runner = LlamaRunner(loaded.model)
    ids = torch.randint(0, 5000, (1, 40), generator=torch.Generator().manual_seed(0))
    cache = runner.new_cache(1, 64)
    slot = cache.acquire()
    ours = runner.forward(cache, [slot], ids[:, :30])
    ours = torch.cat([ours, runner.forward(cache, [slot], ids[:, 30:])], dim=1)
    with torch.inference_mode():
        ref = loaded.model(ids).logits
    assert torch.allclose(ours, ref, atol=2e-3, rtol=0)
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))


def test_batched_passes_match_single_passes(loaded: models.LoadedModel) -> None:
    runner = LlamaRunner(loaded.model)
    cache = runner.new_cache(4, 64)
    slots = [cache.acquire() for _ in range(3)]
    prompts = [[1, 20, 30], [1, 40, 50, 60, 70], [1, 80]]
    single = []
    for slot, prompt in zip(slots, prompts, strict=True):
        runner.forward(cache, [slot], torch.tensor([prompt]))
        ref_cache = runner.new_cache(1, 64)
        s = ref_cache.acquire()
        runner.forward(ref_cache, [s], torch.tensor([prompt]))
        single.append(runner.forward(ref_cache, [s], torch.tensor([[7]]))[0, -1])
    # slots 0 and 2 only: the idle slot 1 in between must not disturb them
    batched = runner.forward(cache, [slots[0], slots[2]], torch.tensor([[7], [7]]))[:, 0]
    assert torch.allclose(batched[0], single[0], atol=1e-3)
    assert torch.allclose(batched[1], single[2], atol=1e-3)
    assert cache.lengths[slots[0]] == 4 and cache.lengths[slots[1]] == 5


def test_a_model_without_a_chat_template_needs_one(
    loaded: models.LoadedModel, tmp_path: Path
) -> None:
    engine = build_engine(EngineConfig(speculate="none"), loaded=loaded)
    saved = loaded.tokenizer.chat_template
    try:
        loaded.tokenizer.chat_template = None
        with pytest.raises(ChatTemplateError, match="no chat template"):
            engine.encode_chat([{"role": "user", "content": "hi"}])
        template = tmp_path / "t.jinja"
        template.write_text("{% for m in messages %}<{{ m['content'] }}>{% endfor %}")
        given = build_engine(EngineConfig(speculate="none", chat_template=template), loaded=loaded)
        assert given.decode(given.encode_chat([{"role": "user", "content": "hi"}])) == "<hi>"
    finally:
        loaded.tokenizer.chat_template = saved

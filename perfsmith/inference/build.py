"""Assemble an :class:`Engine` from a model spec, a compression and a speculation mode."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from perfsmith.errors import ConfigError
from perfsmith.inference import llama_runner, models
from perfsmith.inference.compress import Compression, kept_layers, parse_compression, ranking
from perfsmith.inference.config import EngineConfig, check_speculation
from perfsmith.inference.drafters import (
    AdaptiveNgramDrafter,
    Drafter,
    ModelDrafter,
    PromptLookupDrafter,
)
from perfsmith.inference.engine import Engine
from perfsmith.inference.runner import HFRunner, Runner

log = logging.getLogger(__name__)


def _ranking_file(loaded: models.LoadedModel, spec: str) -> Path | None:
    try:
        source = models.resolve(spec)
    except ConfigError:
        return None
    if source.kind != "gguf":
        return None
    return models.converted_dir(source) / "layer-ranking.json"


def layer_order(loaded: models.LoadedModel, spec: str, steps: int = 4) -> list[int]:
    """Layers in the order they are dropped: calibration-loss progressive ranking (first
    ``steps`` layers; block influence after them) with the fp32 fast runner, cached
    beside the converted weights."""
    return ranking(
        llama_runner.LlamaRunner(loaded.model),
        loaded.tokenizer,
        _ranking_file(loaded, spec),
        steps=steps,
    )


def make_runner(
    loaded: models.LoadedModel, compression: Compression, spec: str, kv_bits: int = 0
) -> Runner:
    model = loaded.model
    if kv_bits and not llama_runner.supports(model.config):
        raise ConfigError(
            f"--kv-bits needs a model the native runner takes; {loaded.name} is "
            f"{model.config.model_type}"
        )
    if llama_runner.supports(model.config):
        layers = None
        if compression.drop:
            order = layer_order(loaded, spec, steps=max(4, compression.drop))
            layers = kept_layers(model.config.num_hidden_layers, order, compression.drop)
        try:
            return llama_runner.LlamaRunner(
                model,
                dtype=compression.torch_dtype,
                int8=compression.int8,
                layers=layers,
                file_weights=loaded.file_weights() if compression.own else None,
                kv_bits=kv_bits,
                act8=compression.act8,
            )
        except ValueError as exc:  # what --kv-bits and act8 need (the kernels, the shapes)
            raise ConfigError(str(exc)) from None
    if compression.int8 or compression.drop or compression.act8:
        raise ConfigError(
            f"int8, act8 and layer dropping need a Llama-architecture model; {loaded.name} is "
            f"{model.config.model_type}: use --compress none or bf16"
        )
    return HFRunner(model, dtype=compression.torch_dtype)


def drafter_factory(
    mode: str,
    loaded: models.LoadedModel,
    config: EngineConfig,
    spec: str,
    compression: Compression | None = None,
) -> Callable[[], Drafter] | None:
    check_speculation(mode)
    if mode == "none":
        return None
    if mode == "ngram":
        return PromptLookupDrafter
    if mode == "adaptive":
        return AdaptiveNgramDrafter
    # the layer-dropped draft model
    model = loaded.model
    if not llama_runner.supports(model.config):
        raise ConfigError("the layer-dropped draft model needs a Llama-architecture model")
    count = model.config.num_hidden_layers
    drop = max(0, count - config.draft_layers)
    order = layer_order(loaded, spec)
    draft_runner = llama_runner.LlamaRunner(
        model,
        dtype=torch.float32,
        layers=kept_layers(count, order, min(drop, len(order))),
        file_weights=loaded.file_weights(),
        act8=(compression or parse_compression(config.compress)).act8,
    )
    return lambda: ModelDrafter(draft_runner, capacity=config.context + 64)


def build_engine(config: EngineConfig, *, loaded: models.LoadedModel | None = None) -> Engine:
    check_speculation(config.speculate)
    compression = parse_compression(config.compress)
    if config.threads:
        torch.set_num_threads(config.threads)
    loaded = loaded or models.load(config.model)
    runner = make_runner(loaded, compression, config.model, config.kv_bits)
    template = None
    if config.chat_template is not None:
        try:
            template = config.chat_template.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read chat template {config.chat_template}: {exc}") from exc
    eos: set[int] = set()
    known = models.known_template(loaded.name)
    if template is None and not getattr(loaded.tokenizer, "chat_template", None) and known:
        template = known[0]
        eos.update(int(loaded.tokenizer.convert_tokens_to_ids(t)) for t in known[1])
    gen_eos: Any = getattr(loaded.model.generation_config, "eos_token_id", None)
    if isinstance(gen_eos, int):
        eos.add(gen_eos)
    elif isinstance(gen_eos, list):
        eos.update(int(e) for e in gen_eos)
    return Engine(
        runner,
        loaded.tokenizer,
        name=loaded.name,
        drafter_factory=drafter_factory(
            config.speculate, loaded, config, config.model, compression
        ),
        eos_ids=eos,
        chat_template=template,
        context=config.context,
        slots=config.slots,
        share_prefixes=config.share_prefixes,
    )

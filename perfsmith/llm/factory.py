"""Build a ChatModel from a short spec string (CLI flags, stored run configs) or settings."""

from __future__ import annotations

import json
from pathlib import Path

from perfsmith.config import Settings
from perfsmith.errors import ConfigError
from perfsmith.llm.base import ChatModel
from perfsmith.llm.scripted import ScriptedChatModel
from perfsmith.llm.specs import SPEC_HELP


def load_script(path: Path) -> ScriptedChatModel:
    """A scripted model from a JSON file; see SPEC_HELP for the format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"script file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read script file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"script file {path} is not valid JSON: {exc}") from exc
    latency = 0.0
    per_token = 0.0
    if isinstance(data, dict) and "replies" in data:
        latency = float(data.get("latency_s", 0.0))
        per_token = float(data.get("per_token_s", 0.0))
        data = data["replies"]
    if isinstance(data, list) and all(isinstance(r, str) for r in data):
        return ScriptedChatModel(data, latency_s=latency, per_token_s=per_token)
    if isinstance(data, dict) and all(
        isinstance(v, list) and all(isinstance(r, str) for r in v) for v in data.values()
    ):
        return ScriptedChatModel(data, latency_s=latency, per_token_s=per_token)
    raise ConfigError(f"script file {path}: expected {SPEC_HELP.split(', or ')[1]}")


def model_from_spec(spec: str, settings: Settings) -> ChatModel:
    if spec == "local" or spec.startswith("local:"):
        from perfsmith.llm.local import LocalChatModel  # loads torch: on demand

        return LocalChatModel(
            model=spec.removeprefix("local").removeprefix(":") or settings.local_model,
            compress=settings.local_compress,
            speculate=settings.local_speculate,
        )
    if spec.startswith("scripted:"):
        return load_script(Path(spec.removeprefix("scripted:")))
    if spec.startswith(("http://", "https://")):
        from perfsmith.llm.openai_compatible import OpenAICompatible  # slow import: on demand

        return OpenAICompatible(
            base_url=spec,
            model=settings.llm_model,
            api_key=settings.llm_api_key,
            requests_per_second=settings.llm_requests_per_second,
            max_concurrency=settings.llm_max_concurrency,
            max_retries=settings.llm_max_retries,
            timeout_s=settings.llm_timeout_s,
            supports_grammar=settings.llm_supports_grammar,
        )
    raise ConfigError(f"unknown LLM spec {spec!r}: use {SPEC_HELP}")


def default_spec(settings: Settings) -> str:
    """PERFSMITH_LLM, else the configured endpoint, else the local engine."""
    return settings.llm or settings.llm_base_url or "local"


def model_from_settings(settings: Settings) -> ChatModel:
    return model_from_spec(default_spec(settings), settings)

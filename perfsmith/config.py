"""Settings from the environment (PERFSMITH_*), a perfsmith.toml, and defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from perfsmith.paths import data_dir

__all__ = ["Settings", "data_dir", "load_settings"]


def _toml_file() -> Path:
    return Path(os.environ.get("PERFSMITH_CONFIG", "perfsmith.toml"))


class Settings(BaseSettings):
    """Every knob perfsmith reads; environment variables win over perfsmith.toml."""

    model_config = SettingsConfigDict(env_prefix="PERFSMITH_", extra="ignore")

    llm: str | None = Field(
        default=None,
        description="which LLM: 'local' (perfsmith's engine, the default with no endpoint), "
        "'local:MODEL', an OpenAI-compatible URL, or 'scripted:FILE'",
    )
    local_model: str = Field(default="embedded", description="model the local engine serves")
    local_compress: str = Field(
        default="none",
        description="none (a GGUF file's own weights), act8 (the same with int8 activations), "
        "fp32, int8, bf16, drop=N",
    )
    local_speculate: str = Field(default="adaptive", description="none, ngram, adaptive, draft")
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"
    )
    llm_model: str = Field(default="gpt-4o-mini", description="model name sent to the endpoint")
    llm_api_key: str | None = Field(default=None, description="API key for the endpoint")
    llm_supports_grammar: bool = Field(
        default=False,
        description="the endpoint takes an EBNF `grammar` in the request body (perfsmith's "
        "own serve-model does): plans are then decoded under the plan grammar",
    )
    llm_requests_per_second: float = Field(default=10.0, gt=0)
    llm_max_concurrency: int = Field(default=8, ge=1)
    llm_max_retries: int = Field(default=4, ge=0)
    llm_timeout_s: float = Field(default=120.0, gt=0)

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; SQLite under the data directory by default"
    )
    max_replans: int = Field(default=3, ge=0)
    max_concurrency: int = Field(default=16, ge=1, description="tasks running at once")
    task_timeout_s: float = Field(default=600.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_file())
        return (init_settings, env_settings, toml)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        path = data_dir() / "perfsmith.db"
        return f"sqlite:///{path}"


def load_settings(**overrides: Any) -> Settings:
    """Settings with explicit overrides (None values are ignored)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from perfsmith.config import load_settings


def test_toml_file_then_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "perfsmith.toml").write_text(
        'llm_base_url = "http://127.0.0.1:9/v1"\nllm_model = "from-toml"\nmax_replans = 1\n'
    )
    settings = load_settings()
    assert (settings.llm_base_url, settings.llm_model, settings.max_replans) == (
        "http://127.0.0.1:9/v1",
        "from-toml",
        1,
    )
    monkeypatch.setenv("PERFSMITH_LLM_MODEL", "from-env")
    monkeypatch.setenv("PERFSMITH_LLM_API_KEY", "sk-test")
    settings = load_settings()
    assert settings.llm_model == "from-env" and settings.llm_api_key == "sk-test"
    assert load_settings(llm_model="explicit", database_url=None).llm_model == "explicit"


def test_invalid_values_are_rejected_with_the_field_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFSMITH_MAX_CONCURRENCY", "0")
    with pytest.raises(ValidationError, match="max_concurrency"):
        load_settings()

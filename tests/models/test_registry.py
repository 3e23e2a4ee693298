"""Building chat models from Model resources, with credentials from the server's environment."""

from __future__ import annotations

import pytest

from hangar.config import Settings
from hangar.errors import ConfigurationError
from hangar.models.anthropic import AnthropicChatModel
from hangar.models.openai import OpenAIChatModel
from hangar.models.registry import build_chat_model
from hangar.models.scripted import ScriptedModel
from hangar.spec.model import ModelSpec


def spec(**fields: object) -> ModelSpec:
    return ModelSpec.model_validate(fields)


def test_each_provider_name_builds_its_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-1")
    monkeypatch.setenv("TEST_URL", "http://127.0.0.1:9/v1")
    openai_model = build_chat_model(
        "o",
        spec(provider="openai", model="m", baseUrlEnv="TEST_URL", apiKeyEnv="TEST_KEY"),
        Settings(),
    )
    assert isinstance(openai_model, OpenAIChatModel)
    assert str(openai_model.client.base_url) == "http://127.0.0.1:9/v1/"
    assert openai_model.client.api_key == "sk-1"
    assert isinstance(
        build_chat_model("a", spec(provider="anthropic", model="c"), Settings()), AnthropicChatModel
    )
    assert isinstance(
        build_chat_model("s", spec(provider="scripted", script=[{"text": "x"}]), Settings()),
        ScriptedModel,
    )


def test_a_missing_credential_variable_is_a_configuration_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigurationError) as exc:
        build_chat_model(
            "o", spec(provider="openai", model="m", apiKeyEnv="NOT_SET_ANYWHERE"), Settings()
        )
    assert "NOT_SET_ANYWHERE" in exc.value.message and exc.value.hint


def test_a_missing_local_model_file_says_what_to_set(tmp_path: object) -> None:
    from hangar.models.local import LocalChatModel, _load

    model = build_chat_model(
        "l", spec(provider="local", path="/nonexistent/model.gguf"), Settings()
    )
    assert isinstance(model, LocalChatModel)
    with pytest.raises(ConfigurationError, match="does not exist"):
        _load(model.path, 512, 1)

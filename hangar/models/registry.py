"""Build a ``ChatModel`` from a ``Model`` resource, one factory per provider name."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hangar.config import Settings
from hangar.errors import ConfigurationError
from hangar.models.base import ChatModel
from hangar.spec.model import ModelSpec

Factory = Callable[[str, ModelSpec, Settings], ChatModel]


def _env(name: str | None, what: str, model: str) -> str | None:
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(
            f"model {model!r}: environment variable {name} ({what}) is not set on the server",
            hint=f"set {name} where Hangar runs, or change the Model's spec",
        )
    return value


def _remote(name: str, spec: ModelSpec, settings: Settings) -> ChatModel:
    """A provider reached over the network: endpoint and key from the server's environment."""
    from hangar.models.anthropic import AnthropicChatModel
    from hangar.models.openai import OpenAIChatModel

    cls = AnthropicChatModel if spec.provider == "anthropic" else OpenAIChatModel
    assert spec.model is not None
    return cls(
        name,
        spec.model,
        base_url=spec.base_url or _env(spec.base_url_env, "its endpoint", name),
        api_key=_env(spec.api_key_env, "its API key", name),
    )


def _local(name: str, spec: ModelSpec, settings: Settings) -> ChatModel:
    from hangar.models.local import LocalChatModel, bundled_model_path

    path = Path(spec.path) if spec.path else settings.local_model_path or bundled_model_path()
    return LocalChatModel(
        name,
        path,
        context=spec.context_window or settings.local_model_context,
        threads=settings.local_model_threads,
    )


def _scripted(name: str, spec: ModelSpec, settings: Settings) -> ChatModel:
    from hangar.models.scripted import ScriptedModel

    return ScriptedModel(name, list(spec.script))


PROVIDERS: dict[str, Factory] = {
    "openai": _remote,
    "anthropic": _remote,
    "local": _local,
    "scripted": _scripted,
}


def build_chat_model(name: str, spec: ModelSpec, settings: Settings) -> ChatModel:
    return PROVIDERS[spec.provider](name, spec, settings)

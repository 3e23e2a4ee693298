"""Build a ``ChatModel`` from a ``Model`` resource, one factory per provider name.

A remote model gets its endpoint and key already resolved (``Endpoint``): from the
namespace's Secrets, or from server variables the administrator granted it, and
the address policy its connections must keep to. Nothing is read from the server's
environment here, and the provider SDKs are not let read it either: a Model that
names no endpoint gets the provider's public one, never the server's
``OPENAI_BASE_URL``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hangar.admission import Grants
from hangar.config import Settings
from hangar.egress import PUBLIC_ONLY, UNRESTRICTED, AddressPolicy
from hangar.errors import ConfigurationError
from hangar.models.base import ChatModel
from hangar.spec.model import ModelSpec
from hangar.spec.secret import SecretKeyRef
from hangar.store.secrets import SecretResolver

PUBLIC_ENDPOINTS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}


@dataclass(frozen=True)
class Endpoint:
    """Where a remote model is, with what key, and where its connections may go."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    policy: AddressPolicy = PUBLIC_ONLY


async def resolve_endpoint(
    grants: Grants,
    secrets: SecretResolver,
    where: str,
    *,
    base_url: str | None = None,
    base_url_env: str | None = None,
    api_key: SecretKeyRef | None = None,
    api_key_env: str | None = None,
) -> Endpoint:
    """A remote model's (or embedder's) endpoint as its spec declares it: a URL the
    tenant wrote is reached by the namespace's address policy; one from a server
    variable the administrator granted is the administrator's, reached as it is."""
    policy = grants.policy
    url = base_url
    if base_url_env is not None:
        url = grants.env(base_url_env, f"{where}.baseUrlEnv")
        if url is None:
            raise _unset(base_url_env, f"{where}.baseUrlEnv")
        policy = UNRESTRICTED
    key = None
    if api_key is not None:
        key = await secrets.resolve(grants.namespace, api_key, f"{where}.apiKey")
    elif api_key_env is not None:
        key = grants.env(api_key_env, f"{where}.apiKeyEnv")
        if key is None:
            raise _unset(api_key_env, f"{where}.apiKeyEnv")
    return Endpoint(url, key, policy)


def _unset(name: str, where: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where}: the server variable {name} is granted to this namespace but not set",
        hint=f"the administrator sets {name} where Hangar runs; or take the value from a "
        "Secret of the namespace instead",
    )


Factory = Callable[[str, ModelSpec, Settings, Endpoint], ChatModel]


def _remote(name: str, spec: ModelSpec, settings: Settings, endpoint: Endpoint) -> ChatModel:
    """A provider reached over the network, through the egress checks."""
    from hangar.egress import http_client
    from hangar.models.anthropic import AnthropicChatModel
    from hangar.models.openai import OpenAIChatModel

    cls = AnthropicChatModel if spec.provider == "anthropic" else OpenAIChatModel
    assert spec.model is not None
    return cls(
        name,
        spec.model,
        base_url=endpoint.base_url or PUBLIC_ENDPOINTS[spec.provider],
        api_key=endpoint.api_key,
        http_client=http_client(endpoint.policy, timeout=600),
    )


def _local(name: str, spec: ModelSpec, settings: Settings, endpoint: Endpoint) -> ChatModel:
    from hangar.models.local import LocalChatModel, bundled_model_path

    path = Path(spec.path) if spec.path else settings.local_model_path or bundled_model_path()
    return LocalChatModel(
        name,
        path,
        context=spec.context_window or settings.local_model_context,
        threads=settings.local_model_threads,
    )


def _scripted(name: str, spec: ModelSpec, settings: Settings, endpoint: Endpoint) -> ChatModel:
    from hangar.models.scripted import ScriptedModel

    return ScriptedModel(name, list(spec.script))


PROVIDERS: dict[str, Factory] = {
    "openai": _remote,
    "anthropic": _remote,
    "local": _local,
    "scripted": _scripted,
}


def build_chat_model(
    name: str, spec: ModelSpec, settings: Settings, endpoint: Endpoint | None = None
) -> ChatModel:
    return PROVIDERS[spec.provider](name, spec, settings, endpoint or Endpoint())

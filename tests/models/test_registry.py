"""Building chat models from Model resources: endpoints and keys from the namespace's
Secrets, or from server variables only when the administrator granted them, and
never from the server's environment by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hangar.admission import Admission
from hangar.config import Settings
from hangar.errors import AdmissionDeniedError, ConfigurationError
from hangar.models.anthropic import AnthropicChatModel
from hangar.models.openai import OpenAIChatModel
from hangar.models.registry import Endpoint, build_chat_model, resolve_endpoint
from hangar.models.scripted import ScriptedModel
from hangar.spec import Secret, parse_document
from hangar.spec.model import ModelSpec
from hangar.spec.secret import SecretKeyRef
from hangar.store.secrets import SecretBox, SecretResolver
from hangar.store.sql import SqlStore
from tests.helpers import doc

GRANTED = Admission.fixed(
    {"environment": [{"names": ["TEST_KEY", "TEST_URL"], "namespaces": ["default"]}]}
)


def spec(**fields: object) -> ModelSpec:
    return ModelSpec.model_validate(fields)


@pytest.fixture
async def secrets(tmp_path: Path) -> SecretResolver:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hangar.db'}")
    await store.migrate()
    box = SecretBox([Fernet.generate_key()])
    secret, _ = parse_document(doc("Secret", "llm", {"data": {"key": "sk-from-secret"}}))
    assert isinstance(secret, Secret)
    await store.apply_resource("default", box.seal(secret))
    return SecretResolver(store, box)


def test_each_provider_name_builds_its_model() -> None:
    endpoint = Endpoint("http://127.0.0.1:9/v1", "sk-1")
    openai_model = build_chat_model("o", spec(provider="openai", model="m"), Settings(), endpoint)
    assert isinstance(openai_model, OpenAIChatModel)
    assert openai_model.base_url == "http://127.0.0.1:9/v1"
    assert openai_model.api_key == "sk-1"
    assert isinstance(
        build_chat_model("a", spec(provider="anthropic", model="c"), Settings()), AnthropicChatModel
    )
    assert isinstance(
        build_chat_model("s", spec(provider="scripted", script=[{"text": "x"}]), Settings()),
        ScriptedModel,
    )


def test_a_model_without_an_endpoint_never_reads_the_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDKs would take OPENAI_BASE_URL and OPENAI_API_KEY from the server's
    environment: a tenant's Model must get neither."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.1.2.3/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-servers-own")
    model = build_chat_model("o", spec(provider="openai", model="m"), Settings())
    assert isinstance(model, OpenAIChatModel)
    assert model.base_url == "https://api.openai.com/v1"
    assert model.api_key is None


async def test_a_granted_variable_or_a_secret_gives_the_endpoint(
    monkeypatch: pytest.MonkeyPatch, secrets: SecretResolver
) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-1")
    monkeypatch.setenv("TEST_URL", "http://127.0.0.1:9/v1")
    grants = GRANTED.grants("default")
    from_env = await resolve_endpoint(
        grants, secrets, "Model 'o' spec", base_url_env="TEST_URL", api_key_env="TEST_KEY"
    )
    assert (from_env.base_url, from_env.api_key) == ("http://127.0.0.1:9/v1", "sk-1")
    assert from_env.policy.unrestricted  # the administrator's own endpoint
    ref = SecretKeyRef(secret="llm", key="key")
    from_secret = await resolve_endpoint(
        grants, secrets, "Model 'o' spec", base_url="https://llm.example/v1", api_key=ref
    )
    assert from_secret.api_key == "sk-from-secret"
    assert not from_secret.policy.unrestricted  # a tenant's URL: checked at every connection


async def test_a_variable_not_granted_is_refused_without_saying_whether_it_is_set(
    monkeypatch: pytest.MonkeyPatch, secrets: SecretResolver
) -> None:
    monkeypatch.setenv("HANGAR_SECRET_KEYS", "x")
    with pytest.raises(AdmissionDeniedError) as refused:
        await resolve_endpoint(
            GRANTED.grants("default"), secrets, "Model 'o' spec", api_key_env="HANGAR_SECRET_KEYS"
        )
    assert "may not read" in refused.value.message and refused.value.status == 403
    other = GRANTED.grants("team-b")  # the grant names 'default' only
    with pytest.raises(AdmissionDeniedError):
        await resolve_endpoint(other, secrets, "Model 'o' spec", api_key_env="TEST_KEY")


async def test_a_granted_variable_that_is_unset_says_so(
    monkeypatch: pytest.MonkeyPatch, secrets: SecretResolver
) -> None:
    monkeypatch.delenv("TEST_KEY", raising=False)
    with pytest.raises(ConfigurationError) as exc:
        await resolve_endpoint(
            GRANTED.grants("default"), secrets, "Model 'o' spec", api_key_env="TEST_KEY"
        )
    assert "TEST_KEY" in exc.value.message and exc.value.hint


def test_a_missing_local_model_file_says_what_to_set(tmp_path: object) -> None:
    from hangar.models.local import LocalChatModel, _load

    model = build_chat_model(
        "l", spec(provider="local", path="/nonexistent/model.gguf"), Settings()
    )
    assert isinstance(model, LocalChatModel)
    with pytest.raises(ConfigurationError, match="does not exist"):
        _load(model.path, 512, 1)

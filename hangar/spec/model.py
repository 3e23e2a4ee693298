"""``Model``: how to reach a model provider, what it costs, and how to script one."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from hangar.spec.base import Resource, SpecModel
from hangar.spec.secret import SecretKeyRef

Provider = Literal["openai", "anthropic", "local", "scripted"]


class Pricing(SpecModel):
    """Prices in US dollars per million tokens."""

    input_per_million: float = Field(default=0, ge=0)
    output_per_million: float = Field(default=0, ge=0)
    cached_input_per_million: float = Field(default=0, ge=0)


class ScriptedToolCall(SpecModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ScriptStep(SpecModel):
    """One reply of a scripted model: text, tool calls, or a provider error."""

    text: str | None = None
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    error: str | None = Field(default=None, description="Fail this call with this message.")
    delay_seconds: float = Field(default=0, ge=0, le=3600)
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0, description="Of the input, from cache.")

    CEL = (
        {
            "rule": "has(self.text) || (has(self.toolCalls) && size(self.toolCalls) > 0)"
            " || has(self.error)",
            "message": "a script step needs 'text', 'toolCalls' or 'error'",
        },
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ScriptStep:
        if self.text is None and not self.tool_calls and self.error is None:
            raise ValueError("a script step needs 'text', 'toolCalls' or 'error'")
        return self


class ModelLimits(SpecModel):
    """How hard this process may use the Model: calls past a limit wait (each waiting run
    records why, in a ``model_waiting`` event, and ``hangar_model_waiting`` counts them)
    instead of failing at the provider. Per process: with several worker processes,
    divide the provider's figures between them."""

    max_concurrency: int | None = Field(
        default=None, ge=1, le=100_000, description="Calls in flight at once."
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Calls started a minute (bursts of as many)."
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="Tokens a minute, input and output: each call's input estimated before "
        "it starts, the difference settled from the usage the provider reports.",
    )
    rate_limit_wait_seconds: float = Field(
        default=300,
        ge=0,
        le=3600,
        description="When the provider answers 429 (after its SDK's own retries), every call "
        "to the Model pauses as long as it asks (Retry-After) and tries again; a call fails "
        "once it has waited this long in all.",
    )


class ModelSpec(SpecModel):
    provider: Provider
    model: str | None = Field(default=None, description="The provider's model id.")
    base_url: str | None = Field(default=None, description="Endpoint of the provider's API.")
    base_url_env: str | None = Field(
        default=None,
        description="Environment variable of the server holding the endpoint (only names "
        "the administrator granted the namespace).",
    )
    api_key: SecretKeyRef | None = Field(
        default=None, description="The API key, from a Secret of the namespace."
    )
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable of the server holding the API key (only names "
        "the administrator granted the namespace).",
    )
    path: str | None = Field(default=None, description="GGUF file for the local provider.")
    script: list[ScriptStep] = Field(
        default_factory=list,
        max_length=1000,
        description="Replies of the scripted provider. The n-th model call after the last "
        "user message gets step n; the last step repeats when the script runs out.",
    )
    context_window: int | None = Field(default=None, ge=128)
    pricing: Pricing = Field(default_factory=Pricing)
    limits: ModelLimits = Field(default_factory=ModelLimits)

    CEL = (
        {
            "rule": "self.provider != 'scripted' || (has(self.script) && size(self.script) > 0)",
            "message": "provider 'scripted' needs a non-empty 'script'",
        },
        {
            "rule": "!(self.provider in ['openai', 'anthropic'])"
            " || (has(self.model) && size(self.model) > 0)",
            "messageExpression": "\"provider '\" + self.provider + \"' needs 'model', the "
            "provider's model id\"",
        },
        {
            "rule": "!(has(self.apiKey) && has(self.apiKeyEnv))",
            "message": "give the API key once: 'apiKey' (a Secret) or 'apiKeyEnv'",
        },
        {
            "rule": "!(has(self.baseUrl) && has(self.baseUrlEnv))",
            "message": "give the endpoint once: 'baseUrl' or 'baseUrlEnv'",
        },
    )

    @model_validator(mode="after")
    def _provider_fields(self) -> ModelSpec:
        if self.provider == "scripted" and not self.script:
            raise ValueError("provider 'scripted' needs a non-empty 'script'")
        if self.provider in ("openai", "anthropic") and not self.model:
            raise ValueError(f"provider {self.provider!r} needs 'model', the provider's model id")
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give the API key once: 'apiKey' (a Secret) or 'apiKeyEnv'")
        if self.base_url is not None and self.base_url_env is not None:
            raise ValueError("give the endpoint once: 'baseUrl' or 'baseUrlEnv'")
        return self


class Model(Resource):
    """A model agents call: its provider, model id, endpoint and key, prices and limits."""

    KIND: ClassVar[str] = "Model"
    PLURAL: ClassVar[str] = "models"
    kind: Literal["Model"]
    spec: ModelSpec

"""``Trigger``: something outside Hangar that starts runs: a webhook (every request
signed with the trigger's secret) or a NATS JetStream subject (every message)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hangar.spec.base import Resource, SpecModel, check_name
from hangar.spec.secret import SecretKeyRef


class Webhook(SpecModel):
    secret: SecretKeyRef = Field(description="The HMAC-SHA256 key the sender signs with.")
    signature_header: str = Field(
        default="X-Hangar-Signature",
        description="Header carrying 'sha256=<hex digest of the body>' "
        "(GitHub's is X-Hub-Signature-256).",
    )


class NatsSource(SpecModel):
    """A NATS JetStream subject: every message on it starts one run (once, however many
    Hangar processes listen and however often NATS redelivers it)."""

    subject: str = Field(description="e.g. 'orders.created'; wildcards allowed.")
    stream: str | None = Field(
        default=None,
        description="The JetStream stream holding the subject; made if none holds it yet.",
    )


class TriggerSpec(SpecModel):
    agent: str = Field(description="The Agent each event runs.")
    webhook: Webhook | None = None
    nats: NatsSource | None = None
    input: str = Field(
        default="{body}",
        description="The run's message; {body} is replaced by the request's body.",
    )

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        return check_name(value, "agent name")

    @model_validator(mode="after")
    def _one_source(self) -> TriggerSpec:
        if (self.webhook is None) == (self.nats is None):
            raise ValueError("a Trigger needs exactly one of 'webhook' or 'nats'")
        return self


class Trigger(Resource):
    KIND: ClassVar[str] = "Trigger"
    PLURAL: ClassVar[str] = "triggers"
    kind: Literal["Trigger"]
    spec: TriggerSpec

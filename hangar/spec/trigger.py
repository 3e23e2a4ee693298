"""``Trigger``: something outside Hangar that starts runs. A webhook trigger starts a
run of its agent for every request signed with the trigger's secret."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from hangar.spec.base import Resource, SpecModel, check_name
from hangar.spec.secret import SecretKeyRef


class Webhook(SpecModel):
    secret: SecretKeyRef = Field(description="The HMAC-SHA256 key the sender signs with.")
    signature_header: str = Field(
        default="X-Hangar-Signature",
        description="Header carrying 'sha256=<hex digest of the body>' "
        "(GitHub's is X-Hub-Signature-256).",
    )


class TriggerSpec(SpecModel):
    agent: str = Field(description="The Agent each event runs.")
    webhook: Webhook
    input: str = Field(
        default="{body}",
        description="The run's message; {body} is replaced by the request's body.",
    )

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        return check_name(value, "agent name")


class Trigger(Resource):
    KIND: ClassVar[str] = "Trigger"
    PLURAL: ClassVar[str] = "triggers"
    kind: Literal["Trigger"]
    spec: TriggerSpec

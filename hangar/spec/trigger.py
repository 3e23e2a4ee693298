"""``Trigger``: something that starts runs: a webhook (every request signed with the
trigger's secret), a NATS JetStream subject (every message) or a cron schedule."""

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
    schedule: str | None = Field(
        default=None,
        description="A cron expression in UTC: five fields, or six with seconds last "
        "('0 9 * * 1-5': weekdays at 09:00). Each time starts one run.",
    )
    input: str = Field(
        default="{body}",
        description="The run's message; {body} is replaced by the request's body.",
    )

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str) -> str:
        return check_name(value, "agent name")

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        from croniter import croniter

        if value is not None and not croniter.is_valid(value):
            raise ValueError(
                f"{value!r} is not a cron expression: five fields (minute hour day month "
                "weekday), or six with seconds last"
            )
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TriggerSpec:
        sources = [x for x in (self.webhook, self.nats, self.schedule) if x is not None]
        if len(sources) != 1:
            raise ValueError("a Trigger needs exactly one of 'webhook', 'nats' or 'schedule'")
        return self


class Trigger(Resource):
    KIND: ClassVar[str] = "Trigger"
    PLURAL: ClassVar[str] = "triggers"
    kind: Literal["Trigger"]
    spec: TriggerSpec

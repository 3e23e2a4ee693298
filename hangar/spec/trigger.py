"""``Trigger``: something that starts runs: a webhook (every request signed with the
trigger's secret), a NATS JetStream subject (every message) or a cron schedule."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hangar.errors import shown
from hangar.spec.base import Resource, SpecModel, check_name
from hangar.spec.secret import SecretKeyRef


class Webhook(SpecModel):
    """How a webhook proves it comes from the sender. ``standard`` is the Standard
    Webhooks scheme: headers ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``; a request
    older (or newer) than the tolerance is refused, and each id starts one run however
    often it is sent. ``hmac-sha256`` is GitHub's: ``sha256=<hex HMAC of the body>`` in
    ``signatureHeader``, no timestamp, so a body is run once however often it is sent."""

    secret: SecretKeyRef = Field(
        description="The HMAC-SHA256 key the sender signs with ('whsec_' + base64, or any text)."
    )
    scheme: Literal["standard", "hmac-sha256"] = "standard"
    signature_header: str = Field(
        default="X-Hub-Signature-256",
        max_length=100,
        description="With scheme hmac-sha256: the header carrying 'sha256=<hex digest>'.",
    )


SUBJECT = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+|\.\*)*(\.>)?$")


class NatsSource(SpecModel):
    """A NATS JetStream subject: every message on it starts one run (once, however many
    Hangar processes listen and however often NATS redelivers it). Subjects are the
    namespace's own: Hangar listens on ``PREFIX.NAMESPACE.SUBJECT`` (``PREFIX`` is
    ``HANGAR_NATS_SUBJECT_PREFIX``, ``hangar`` by default), in a stream of its own."""

    subject: str = Field(
        max_length=200, description="e.g. 'orders.created'; wildcards '*' and '>' allowed."
    )
    stream: str | None = Field(
        default=None,
        description="The stream's name within the namespace (Hangar's is "
        "HANGAR_<NAMESPACE>_<this>); default: the Trigger's name.",
    )

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value.lower(), "stream name")

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        if not SUBJECT.match(value):
            raise ValueError(
                f"{shown(value)} is not a NATS subject: tokens of letters, digits, '-' and "
                "'_' joined by '.', with '*' for one token or a final '>' for the rest"
            )
        return value


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
                f"{shown(value)} is not a cron expression: five fields (minute hour day month "
                "weekday), or six with seconds last"
            )
        return value

    CEL = (
        {
            "rule": "[has(self.webhook), has(self.nats), has(self.schedule)]"
            ".filter(x, x).size() == 1",
            "message": "a Trigger needs exactly one of 'webhook', 'nats' or 'schedule'",
        },
    )

    @model_validator(mode="after")
    def _one_source(self) -> TriggerSpec:
        sources = [x for x in (self.webhook, self.nats, self.schedule) if x is not None]
        if len(sources) != 1:
            raise ValueError("a Trigger needs exactly one of 'webhook', 'nats' or 'schedule'")
        return self


class Trigger(Resource):
    """What starts an agent's runs without a caller: a signed webhook, a NATS subject or a
    schedule."""

    KIND: ClassVar[str] = "Trigger"
    PLURAL: ClassVar[str] = "triggers"
    kind: Literal["Trigger"]
    spec: TriggerSpec

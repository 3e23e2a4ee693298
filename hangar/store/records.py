"""The plain records the store hands out.

Frozen dataclasses: the layers above never see SQLAlchemy rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

import orjson

from hangar.roles import Permission, Role, allows
from hangar.spec.base import API_VERSION
from hangar.usage import Usage


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    WAITING_APPROVAL = "waiting_approval"
    """Parked until a person approves or denies a tool call; no worker holds it."""

    @property
    def finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


ApplyOutcome = Literal["created", "configured", "unchanged"]


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id in a W3C ``traceparent`` (version-trace-span-flags), or None."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) == 4 else None


@dataclass(frozen=True)
class ApiKey:
    """A key as the store keeps it: never its secret, which only its holder has."""

    id: str
    namespace: str
    name: str
    prefix: str
    role: Role
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    """When it was last used, to the minute (recorded at most once a minute)."""

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN

    def may(self, permission: Permission) -> bool:
        return allows(self.role, permission)

    def unusable(self, at: datetime) -> str | None:
        """Why the key no longer authenticates (revoked, expired), or None."""
        if self.revoked_at is not None:
            return f"was revoked at {self.revoked_at.isoformat()}"
        if self.expires_at is not None and self.expires_at <= at:
            return f"expired at {self.expires_at.isoformat()}"
        return None

    def to_dict(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "object": "api_key",
            "namespace": self.namespace,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role.value,
            "created_at": stamp(self.created_at),
            "expires_at": stamp(self.expires_at),
            "revoked_at": stamp(self.revoked_at),
            "last_used_at": stamp(self.last_used_at),
        }


@dataclass(frozen=True)
class StoredResource:
    namespace: str
    kind: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]
    created_at: datetime
    updated_at: datetime

    def to_document(self) -> dict[str, Any]:
        """The resource as a user reads it back: apply-able, with server fields filled in."""
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": self.labels,
                "annotations": self.annotations,
                "generation": self.generation,
                "uid": self.uid,
                "createdAt": self.created_at.isoformat(),
                "updatedAt": self.updated_at.isoformat(),
            },
            "spec": self.spec,
            "status": {"observedGeneration": self.generation},
        }


@dataclass(frozen=True)
class ResourceVersion:
    namespace: str
    kind: str
    name: str
    generation: int
    spec: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class RunRecord:
    id: str
    namespace: str
    agent: str
    agent_generation: int
    status: RunStatus
    input: dict[str, Any]
    created_at: datetime
    reason: str | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    usage: Usage = field(default_factory=Usage)
    last_seq: int = 0
    cancel_requested: bool = False
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parent_id: str | None = None
    """The run whose agent called this one as a tool."""
    depth: int = 0
    """How many agents-as-tools deep: 0 for a run a client started."""
    trace_context: str | None = None
    """W3C ``traceparent`` of the span the run's work continues (its trace)."""
    timing: dict[str, float] | None = None
    """Where the run's time went: ``model_ms``, ``tools_ms``, ``hangar_ms``, ``queued_ms``."""
    lease_expires_at: datetime | None = None
    """While running: when its worker's hold ends unless renewed (then another takes it)."""
    priority: int = 0
    """Higher runs first; equal priorities run oldest first."""
    session_id: str | None = None
    """The session this run is a turn of: it sees the session's earlier turns."""
    user: str | None = None
    """The end user the run serves (the caller's id for them): whose memory it uses."""
    key_id: str | None = None
    """The API key that started it (a runner key reads only its own runs); runs it
    started as tools carry it too. None for runs a trigger or schedule started."""

    @property
    def trace_id(self) -> str | None:
        return trace_id_of(self.trace_context)

    def to_dict(self) -> dict[str, Any]:
        duration = None
        if self.started_at and self.finished_at:
            duration = (self.finished_at - self.started_at).total_seconds()
        return {
            "id": self.id,
            "object": "run",
            "namespace": self.namespace,
            "agent": self.agent,
            "agent_generation": self.agent_generation,
            "status": self.status.value,
            "reason": self.reason,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "usage": self.usage.to_dict(),
            "events": self.last_seq,
            "created_at": self.created_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_seconds": duration,
            "parent_id": self.parent_id,
            "depth": self.depth,
            "trace_id": self.trace_id,
            "timing": self.timing,
            "priority": self.priority,
            "session_id": self.session_id,
            "user": self.user,
        }


@dataclass(frozen=True)
class MemoryRecord:
    """One fact remembered about an end user, with its vector for recall."""

    id: str
    namespace: str
    user: str
    text: str
    embedding: list[float]
    created_at: datetime
    updated_at: datetime
    run_id: str | None = None
    """The run it was learnt from (None: written by hand)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "memory",
            "user": self.user,
            "text": self.text,
            "run_id": self.run_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class MemoryChanges:
    """What learning from a run does to a user's memories: new wordings of kept ones
    (id, text, embedding) and new ones."""

    updated: Sequence[tuple[str, str, list[float]]] = ()
    added: Sequence[MemoryRecord] = ()


@dataclass(frozen=True)
class SessionRecord:
    """A conversation with one agent: its runs, in order, are its turns."""

    id: str
    namespace: str
    agent: str
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    """Older turns summarised: ``{"text", "through"}`` (the last run it covers)."""
    key_id: str | None = None
    """The API key that opened it: a runner key sees only its own sessions."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "session",
            "namespace": self.namespace,
            "agent": self.agent,
            "metadata": self.metadata,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.WAITING_APPROVAL)
"""A run in one of these may still write to its session."""


@dataclass(frozen=True)
class RunEvent:
    run_id: str
    seq: int
    namespace: str
    type: str
    data: dict[str, Any]
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }


@dataclass(frozen=True)
class ToolAudit:
    """One tool call as the audit log keeps it: never the arguments, only their hash."""

    namespace: str
    agent: str
    run_id: str
    tool: str
    arguments_sha256: str
    outcome: str
    """``ok``, ``error``, ``denied``, or ``approval_denied``."""
    duration_ms: float
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "agent": self.agent,
            "run": self.run_id,
            "tool": self.tool,
            "argumentsSha256": self.arguments_sha256,
            "outcome": self.outcome,
            "durationMs": self.duration_ms,
            "createdAt": self.created_at.isoformat(),
        }


def started_data(started: dict[str, Any], resumed: bool) -> dict[str, Any]:
    """A run's ``run_started`` event: who took it (``started``), marked ``resumed`` when
    it goes on from events of an earlier start. (The claim's own statement builds the
    same on PostgreSQL.)"""
    return {**started, "resumed": True} if resumed else dict(started)


def stored_span(
    trace_id: str,
    span_id: str,
    parent_span_id: str | None,
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int,
    status: str,
    attributes: dict[str, Any],
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    """A span as the store keeps it and the API shows it (``SpanRecord.to_dict``).
    Telemetry makes these straight from its spans: they come by the dozen per run."""
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent_span_id,
        "name": name,
        "kind": kind,
        "startTimeUnixNano": start_ns,
        "endTimeUnixNano": end_ns,
        "durationMs": round((end_ns - start_ns) / 1e6, 3),
        "status": status,
        "attributes": attributes,
        "events": events,
    }


KEY_PREFIX = "hgr_"
"""How every API key's secret starts (a leaked one is easy to find and revoke)."""

SPAN_NAMESPACE = "hangar.namespace"
"""The span attribute naming the namespace whose work a span times."""

EncodedSpan = tuple[str, str | None, bytes]
"""A span on its way to the store: its trace id, its namespace and its stored form as
JSON. Spans wait for the next flush (half a second) in this form because strings and
bytes are not tracked by Python's garbage collector: kept as objects, a second's spans
(thousands of dicts) survived the young collections into the oldest generation and
made every full collection longer; measured, that cost the server 9% more CPU per run
than making the spans did."""


def encoded_span(span: dict[str, Any]) -> EncodedSpan:
    """A span in its stored form (``stored_span``), ready to wait for the store."""
    return span["traceId"], span["attributes"].get(SPAN_NAMESPACE), orjson.dumps(span)


@dataclass(frozen=True)
class SpanRecord:
    """One finished span, as the store keeps it (hex ids, nanosecond times)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    events: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return stored_span(
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.name,
            self.kind,
            self.start_ns,
            self.end_ns,
            self.status,
            self.attributes,
            self.events,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpanRecord:
        return cls(
            trace_id=data["traceId"],
            span_id=data["spanId"],
            parent_span_id=data["parentSpanId"],
            name=data["name"],
            kind=data["kind"],
            start_ns=data["startTimeUnixNano"],
            end_ns=data["endTimeUnixNano"],
            status=data["status"],
            attributes=data["attributes"],
            events=data["events"],
        )


LEDGER_GROUPS = ("namespace", "agent", "model", "run", "day")
"""What the usage ledger can be summed by."""


@dataclass(frozen=True)
class LedgerEntry:
    """One model call's tokens and cost, charged to a run, its agent and namespace."""

    namespace: str
    agent: str
    run_id: str
    model: str
    usage: Usage
    created_at: datetime

    def line(self) -> tuple[Any, ...]:
        """The line's own values, in the order the statements take them: agent, model,
        day (UTC), input, cached input and output tokens, cost."""
        usage = self.usage
        return (
            self.agent,
            self.model,
            self.created_at.astimezone(UTC).date().isoformat(),
            usage.input_tokens,
            usage.cached_input_tokens,
            usage.output_tokens,
            usage.cost,
        )


@dataclass(frozen=True)
class BudgetLine:
    """One budget's counter for one period, and its limits."""

    key: str
    max_tokens: int | None
    max_cost: float | None


@dataclass(frozen=True)
class BatchItem:
    """One line of a batch: the run it started, or why it could not start one."""

    line: int
    custom_id: str
    run_id: str | None
    error: dict[str, Any] | None


NoticeKind = Literal["event", "queued", "resync"]


@dataclass(frozen=True)
class Notice:
    """``event``: a run's event was stored (``seq``, ``type``); ``queued``: a run is
    waiting for a worker; ``resync``: notices may have been missed, catch up."""

    kind: NoticeKind
    namespace: str = ""
    run_id: str = ""
    seq: int = 0
    type: str = ""


class WriteSpans(Protocol):
    """Where the store reports its writes as spans (the runtime's telemetry)."""

    enabled: bool

    def record(self, name: str, start_ns: int, attributes: dict[str, Any]) -> None:
        """A span from ``start_ns`` to now, a child of the current span."""


class NoWriteSpans:
    enabled = False

    def record(self, name: str, start_ns: int, attributes: dict[str, Any]) -> None:
        return None


@dataclass(frozen=True)
class QueueHead:
    """One namespace with queued runs, as a look at the queue sees it (``RunQueue.queue_heads``)."""

    namespace: str
    priority: int
    """Its highest queued priority."""
    running: int
    """Its runs running now."""


@dataclass(frozen=True)
class ClaimRequest:
    """A worker slot's claim (``Store.claim_run``'s arguments)."""

    worker: str
    lease_seconds: float = 30.0
    max_running: int | None = None
    started: dict[str, Any] | None = None
    held_back: frozenset[str] = frozenset()
    """Agents (``namespace/agent``) whose queued runs this claim leaves queued."""

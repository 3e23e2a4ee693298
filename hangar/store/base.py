"""The ``Store`` protocol and the plain records it hands out.

Records are frozen dataclasses: the layers above never see SQLAlchemy rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from hangar.roles import Permission, Role, allows
from hangar.spec.base import API_VERSION, Resource


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
class Usage:
    input_tokens: int = 0
    """All input tokens, cached ones included."""
    output_tokens: int = 0
    cost: float = 0.0
    cached_input_tokens: int = 0
    """Input tokens the provider served from its prompt cache (billed at its own price)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost + other.cost,
            self.cached_input_tokens + other.cached_input_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost": round(self.cost, 10),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            float(data.get("cost", 0.0)),
            int(data.get("cached_input_tokens", 0)),
        )


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
class ClaimRequest:
    """A worker slot's claim (``Store.claim_run``'s arguments)."""

    worker: str
    lease_seconds: float = 30.0
    max_running: int | None = None
    started: dict[str, Any] | None = None


class Store(Protocol):
    """Persistence for resources, keys, runs and their events, scoped by namespace."""

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...
    async def listen(self, on_notice: Callable[[Notice], None], *, events: bool = True) -> None:
        """Tell ``on_notice`` of changes that any process commits, until cancelled.
        Returns at once where the store has no notices (SQLite: one machine, where
        the processes' polls find what others did). Without ``events``, only of queued
        runs (a worker process streams no run to anyone)."""
        ...

    # sessions
    async def create_session(self, session: SessionRecord) -> None: ...
    async def get_session(self, namespace: str, session_id: str) -> SessionRecord | None: ...
    async def list_sessions(
        self, namespace: str, *, agent: str | None = None, limit: int = 50
    ) -> list[SessionRecord]: ...
    async def session_runs(self, namespace: str, session_id: str) -> list[RunRecord]:
        """The session's runs, oldest first."""
        ...

    async def delete_session(self, namespace: str, session_id: str) -> bool:
        """Remove the session with its runs and their events; ``SessionBusyError`` while
        one of them is active."""
        ...

    async def set_session_summary(
        self, namespace: str, session_id: str, summary: dict[str, Any]
    ) -> None: ...

    # end users' long-term memory
    async def add_memory(self, memory: MemoryRecord) -> None: ...
    async def list_memories(self, namespace: str, user: str) -> list[MemoryRecord]:
        """The user's memories, oldest first."""
        ...

    async def update_memory(
        self, namespace: str, user: str, memory_id: str, text: str, embedding: list[float]
    ) -> MemoryRecord | None: ...
    async def change_memories(
        self, namespace: str, user: str, change: Callable[[list[MemoryRecord]], MemoryChanges]
    ) -> MemoryChanges:
        """Apply what ``change`` decides from the user's memories as they are now, in one
        transaction that any process changing the same user's memories waits for: two
        runs of one user learnt from at the same moment on two workers would otherwise
        both read the memories without the other's fact, and both add it."""
        ...

    async def delete_memory(self, namespace: str, user: str, memory_id: str) -> bool: ...
    async def forget_user(self, namespace: str, user: str) -> dict[str, int]:
        """Remove every trace of an end user: their memories, their runs (and the runs
        those started), the runs' events, tool-call audit lines, traces, batch lines,
        and the sessions they spoke in. ``SessionBusyError`` while one of their runs
        is active. Returns how many of each went. The usage ledger keeps its lines
        (tokens and cost per agent and day), which name no user."""
        ...

    # API keys
    async def create_api_key(
        self,
        namespace: str,
        name: str,
        *,
        role: Role = Role.NAMESPACE_ADMIN,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once; only its hash is kept)."""
        ...

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, revoked or expired ones too (the caller says
        why it is refused), or None."""
        ...

    async def list_api_keys(self, namespace: str | None = None) -> list[ApiKey]:
        """Every key (of one namespace), newest first."""
        ...

    async def revoke_api_key(self, key_id: str, namespace: str | None = None) -> ApiKey | None:
        """Revoke a key (of that namespace, if given); the key as stored after, or None."""
        ...

    async def touch_api_key(self, key_id: str, at: datetime) -> None:
        """Record that the key was used at ``at``."""
        ...

    # resources
    async def apply_resource(
        self, namespace: str, resource: Resource
    ) -> tuple[StoredResource, ApplyOutcome]: ...
    async def get_resource(self, namespace: str, kind: str, name: str) -> StoredResource | None: ...
    async def list_resources(self, namespace: str, kind: str) -> list[StoredResource]: ...
    async def cached_resource(self, namespace: str, kind: str, name: str) -> StoredResource | None:
        """``get_resource`` for the hot path (each run's Model): a change this process
        makes is seen at once, one another process makes within a second."""
        ...

    async def cached_resources(self, namespace: str, kind: str) -> list[StoredResource]:
        """``list_resources`` for the hot path (the Budgets checked before each model
        call), as fresh as ``cached_resource``."""
        ...

    async def list_all_resources(self, kind: str) -> list[StoredResource]:
        """Every namespace's resources of a kind: for the platform itself, never a client."""
        ...

    async def delete_resource(self, namespace: str, kind: str, name: str) -> bool: ...
    async def list_versions(
        self, namespace: str, kind: str, name: str
    ) -> list[ResourceVersion]: ...
    async def get_version(
        self, namespace: str, kind: str, name: str, generation: int
    ) -> ResourceVersion | None: ...

    # runs and events
    async def create_run(self, run: RunRecord) -> RunRecord:
        """Store a new run. A run of a session is refused (``SessionBusyError``) while
        another of its runs is active, and ``SessionNotFoundError`` if there is none."""
        ...

    async def get_run(self, namespace: str, run_id: str) -> RunRecord | None: ...
    async def list_runs(
        self,
        namespace: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        key_id: str | None = None,
        status: RunStatus | None = None,
    ) -> list[RunRecord]:
        """Newest first; only one agent's, one key's or one status's when given."""
        ...

    async def claim_run(
        self,
        worker: str,
        lease_seconds: float = 30.0,
        max_running: int | None = None,
        *,
        started: dict[str, Any] | None = None,
    ) -> RunRecord | None: ...
    async def renew_leases(
        self, holders: dict[str, str], lease_seconds: float = 30.0
    ) -> set[str]: ...
    async def refresh_queue_statistics(self) -> bool:
        """Have the database re-read the runs table's statistics if they are stale (as
        its autovacuum would); True if it did. For the processes that claim runs."""
        ...

    async def finish_and_claim(
        self,
        run_id: str,
        status: RunStatus,
        claim: ClaimRequest,
        *,
        reason: str | None = None,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: Usage | None = None,
        timing: dict[str, float] | None = None,
        holder: str,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> tuple[RunRecord, RunRecord | None]:
        """``finish_run``, then ``claim_run`` for the same worker slot (only if the run
        was still held): its next run comes back with its last one's end (on
        PostgreSQL in the same statement, a round trip saved per run)."""
        ...

    async def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        reason: str | None = None,
        output: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        usage: Usage | None = None,
        timing: dict[str, float] | None = None,
        holder: str | None = None,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> RunRecord:
        """End a run; store ``events`` (type, data: its last ones) in the same
        transaction, as the run's next ``seq``s."""
        ...

    async def request_cancel(self, namespace: str, run_id: str) -> tuple[RunRecord, bool] | None:
        """Cancel a run no worker holds (queued or waiting) at once, or flag a running one
        for its worker. Returns the run and whether this call ended it."""
        ...

    async def park_run(
        self,
        run_id: str,
        usage: Usage,
        holder: str | None = None,
        events: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> RunRecord:
        """A running run now waits for approval: released by its worker, not finished."""
        ...

    async def requeue_run(self, namespace: str, run_id: str) -> bool:
        """A waiting run goes back to the queue; False if it was not waiting."""
        ...

    async def append_event(
        self,
        run_id: str,
        namespace: str,
        type: str,
        data: dict[str, Any],
        *,
        holder: str | None = None,
        ledger: LedgerEntry | None = None,
        before: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> RunEvent:
        """Append one event (a model response may bring its ``ledger`` line, stored
        with it: both or neither), after the events ``before`` (type, data: held back
        by the caller, stored in the same statement as the seqs just before it)."""
        ...

    async def list_events(
        self, namespace: str, run_id: str, *, after: int = 0, limit: int = 10_000
    ) -> list[RunEvent]: ...

    # audit
    async def record_tool_call(self, entry: ToolAudit) -> None: ...
    async def list_tool_calls(
        self,
        namespace: str,
        *,
        run_id: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> list[ToolAudit]: ...

    # traces
    async def record_spans(self, spans: list[dict[str, Any]]) -> None:
        """Keep spans, each in its stored form (``stored_span``)."""

    async def list_spans(self, namespace: str, trace_id: str) -> list[SpanRecord]:
        """The namespace's spans of a trace (another namespace's under the same trace id,
        brought by a caller's ``traceparent``, are not its to see)."""
        ...

    # usage ledger
    async def record_usage(self, entry: LedgerEntry) -> None: ...
    async def usage_summary(
        self,
        namespace: str,
        group_by: Sequence[str],
        *,
        since: str | None = None,
        until: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Sums of tokens, cost and calls per group (``LEDGER_GROUPS``), days inclusive."""
        ...

    async def count_runs(self) -> list[tuple[str, str, int]]:
        """(namespace, status, runs) for every namespace: for metrics, never a client."""
        ...

    # budgets
    async def reserve_budget(
        self, lines: Sequence[BudgetLine], tokens: int, cost: float, *, run_id: str | None = None
    ) -> BudgetLine | None:
        """Reserve ``tokens`` and ``cost`` on every line at once, or on none: returns the
        first line with no room left (spent plus reserved at its limit), else None.
        With ``run_id``, the reservation is recorded as that run's, to be given back
        (``release_budget_holds``) if its worker dies before settling it."""
        ...

    async def settle_budget(
        self,
        lines: Sequence[BudgetLine],
        reserved_tokens: int,
        reserved_cost: float,
        tokens: int,
        cost: float,
        *,
        run_id: str | None = None,
    ) -> None:
        """Replace a reservation by what was really spent. With ``run_id``, the run's
        recorded reservation, unless it was given back already (the run was taken
        over): what was spent still counts."""
        ...

    async def release_budget_holds(self, run_id: str) -> int:
        """Give back what a run has reserved and not settled (its worker died during a
        model call); returns how many reservations."""
        ...

    async def budget_spent(self, key: str) -> tuple[int, float]: ...

    # batches
    async def create_batch(
        self,
        batch_id: str,
        namespace: str,
        items: Sequence[BatchItem],
        key_id: str | None = None,
    ) -> None: ...
    async def get_batch(
        self, namespace: str, batch_id: str, key_id: str | None = None
    ) -> tuple[datetime, list[tuple[BatchItem, RunRecord | None]]] | None:
        """The batch's creation time and each line with its run as it is now; with
        ``key_id``, only if that key created it."""
        ...

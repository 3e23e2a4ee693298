"""The store's protocols: one per concern, so each consumer depends on the calls it
makes (``Budgets`` on the ``Ledger``, the MCP hub on ``ResourceStore``), and ``Store``,
all of them, for the composition root.

The records they hand out are in ``records``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from hangar.roles import Role
from hangar.spec.base import Resource
from hangar.store.records import (
    ApiKey,
    ApplyOutcome,
    BatchItem,
    BudgetLine,
    ClaimRequest,
    EncodedSpan,
    LedgerEntry,
    MemoryChanges,
    MemoryRecord,
    Notice,
    QueueHead,
    ResourceVersion,
    RunEvent,
    RunRecord,
    RunStatus,
    SessionRecord,
    SpanRecord,
    StoredResource,
    ToolAudit,
    WriteSpans,
)
from hangar.usage import Usage


class ResourceStore(Protocol):
    """Resources by namespace, kind and name, with every version kept (runs resolve
    the spec they started with)."""

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


class KeyStore(Protocol):
    """API keys: stored as hashes, with their role and lifecycle."""

    async def create_api_key(
        self,
        namespace: str,
        name: str,
        *,
        role: Role = Role.NAMESPACE_ADMIN,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (shown once; only its hash is kept). ``secret``: the
        one an administrator chose (a deployment's admin key from its Secret); a key
        with that secret already stored raises ``ConflictError``."""
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


class SessionStore(Protocol):
    """Conversations: a session's runs take turns."""

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


class MemoryStore(Protocol):
    """What agents remember about end users, and forgetting a user whole."""

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


class RunQueue(Protocol):
    """Runs and the queue: created queued, claimed under a lease by one worker,
    ended or parked by their holder."""

    async def create_run(
        self, run: RunRecord, events: Sequence[tuple[str, dict[str, Any]]] = ()
    ) -> RunRecord:
        """Store a new run, with ``events`` as its first (a run created claimed, handed
        to a worker at once, has its ``run_started``). A run of a session is refused
        (``SessionBusyError``) while another of its runs is active, and
        ``SessionNotFoundError`` if there is none."""
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

    async def count_runs(self) -> list[tuple[str, str, int]]:
        """(namespace, status, runs) for every namespace: for metrics, never a client."""
        ...

    async def claim_run(
        self,
        worker: str,
        lease_seconds: float = 30.0,
        max_running: int | None = None,
        *,
        started: dict[str, Any] | None = None,
        next_of: str | None = None,
        held_back: frozenset[str] = frozenset(),
    ) -> RunRecord | None:
        """Take the next claimable run (the fair choice, or ``next_of``'s next run) under
        a lease, storing its ``run_started`` (``started``) with the claim; never a
        queued run of an agent ``held_back`` names (``namespace/agent``)."""
        ...

    async def queue_heads(self, held_back: frozenset[str] = frozenset()) -> list[QueueHead] | None:
        """The namespaces with queued runs (but those ``held_back``); None while the
        claim must choose itself."""
        ...

    def watch_queue(self, changed: Callable[[str | None], None]) -> None:
        """Be told of changes to what the fair choice depends on (a namespace a run was
        queued in, or None for anything)."""
        ...

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
        next_of: str | None = None,
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


class EventLog(Protocol):
    """A run's events, numbered without gaps by the run row."""

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


class AuditLog(Protocol):
    """One line per tool call."""

    async def record_tool_call(self, entry: ToolAudit) -> None: ...

    async def list_tool_calls(
        self,
        namespace: str,
        *,
        run_id: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> list[ToolAudit]: ...


class SpanSink(Protocol):
    """Trace spans, stored and read with their namespace."""

    async def record_spans(self, spans: list[EncodedSpan]) -> None:
        """Keep spans, each encoded from its stored form (``encoded_span``)."""

    async def list_spans(self, namespace: str, trace_id: str) -> list[SpanRecord]:
        """The namespace's spans of a trace (another namespace's under the same trace id,
        brought by a caller's ``traceparent``, are not its to see)."""
        ...


class Ledger(Protocol):
    """Usage lines (tokens and cost) and budget counters with reservations."""

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


class BatchStore(Protocol):
    """Batches of runs started together."""

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


class Store(
    ResourceStore,
    KeyStore,
    SessionStore,
    MemoryStore,
    RunQueue,
    EventLog,
    AuditLog,
    SpanSink,
    Ledger,
    BatchStore,
    Protocol,
):
    """Persistence for resources, keys, runs and their events, scoped by namespace."""

    spans: WriteSpans
    """Where the store reports its writes as spans (set by the runtime's telemetry)."""

    async def migrate(self) -> None: ...
    async def ping(self) -> None:
        """Raise unless the database answers a statement now (a readiness probe)."""
        ...

    async def close(self) -> None: ...
    async def listen(self, on_notice: Callable[[Notice], None], *, events: bool = True) -> None:
        """Tell ``on_notice`` of changes that any process commits, until cancelled.
        Returns at once where the store has no notices (SQLite: one machine, where
        the processes' polls find what others did). Without ``events``, only of queued
        runs (a worker process streams no run to anyone)."""
        ...

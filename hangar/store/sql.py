"""The store on SQLAlchemy 2 async Core: one implementation for SQLite and PostgreSQL.

Dialect differences are kept to the engine's setup (WAL and a busy timeout on
SQLite, a search path on PostgreSQL); every query is the same on both. The
queue claim uses ``FOR UPDATE SKIP LOCKED``, which PostgreSQL honours and
SQLite (a single writer) does not need.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hangar.config import state_file
from hangar.errors import (
    ConflictError,
    LeaseLostError,
    RunNotFoundError,
    SessionBusyError,
    SessionNotFoundError,
    UserBusyError,
)
from hangar.spec.base import Resource
from hangar.store import tables
from hangar.store.base import (
    ACTIVE_STATUSES,
    ApplyOutcome,
    BatchItem,
    BudgetLine,
    ClaimRequest,
    LedgerEntry,
    MemoryChanges,
    MemoryRecord,
    Notice,
    NoWriteSpans,
    ResourceVersion,
    RunEvent,
    RunRecord,
    RunStatus,
    SessionRecord,
    SpanRecord,
    StoredResource,
    ToolAudit,
    Usage,
    WriteSpans,
    started_data,
    trace_id_of,
)
from hangar.store.keys import KeyStore, _utc
from hangar.store.notices import Announcer, listen_postgres
from hangar.store.postgres import driver_dsn
from hangar.store.tables import (
    resource_versions,
    resources,
    run_events,
    runs,
    sessions,
    tool_audit,
    user_memories,
)

MIGRATIONS = Path(__file__).parent / "migrations"
SPAN_NAMESPACE = "hangar.namespace"
"""The span attribute naming the namespace whose work a span times."""
RESOURCE_CACHE_SECONDS = 1.0
"""How old a cached resource may be: what this process applies or deletes is seen at
once; what another process does, within this."""
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _resource(row: RowMapping) -> StoredResource:
    return StoredResource(
        namespace=row["namespace"],
        kind=row["kind"],
        name=row["name"],
        uid=row["uid"],
        generation=row["generation"],
        spec=row["spec"],
        labels=row["labels"],
        annotations=row["annotations"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_utc(row["updated_at"]),  # type: ignore[arg-type]
    )


def _version(row: RowMapping) -> ResourceVersion:
    return ResourceVersion(
        namespace=row["namespace"],
        kind=row["kind"],
        name=row["name"],
        generation=row["generation"],
        spec=row["spec"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
    )


def _run(row: RowMapping) -> RunRecord:
    return RunRecord(
        id=row["id"],
        namespace=row["namespace"],
        agent=row["agent"],
        agent_generation=row["agent_generation"],
        status=RunStatus(row["status"]),
        reason=row["reason"],
        input=row["input"],
        output=row["output"],
        error=row["error"],
        usage=Usage.from_dict(row["usage"] or {}),
        last_seq=row["last_seq"],
        cancel_requested=row["cancel_requested"],
        worker=row["worker"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        started_at=_utc(row["started_at"]),
        finished_at=_utc(row["finished_at"]),
        parent_id=row["parent_id"],
        depth=row["depth"],
        trace_context=row["trace_context"],
        timing=row["timing"],
        lease_expires_at=_utc(row["lease_expires_at"]),
        priority=row["priority"],
        session_id=row["session_id"],
        user=row["user_id"],
        key_id=row["key_id"],
    )


async def _delete_runs(conn: AsyncConnection, ids: set[str]) -> dict[str, int]:
    """Delete runs, the runs they started (agents called as tools), and all that holds
    anything of them: events, tool-call audit lines, traces and batch lines. The usage
    ledger keeps its lines: tokens and cost, by agent and day."""
    doomed: set[str] = set()
    found = set(ids)
    while found:  # the runs, then the runs of agents they called, and so on
        doomed |= found
        children = sa.select(runs.c.id).where(runs.c.parent_id.in_(found))
        found = set((await conn.execute(children)).scalars().all()) - doomed
    if not doomed:
        return {"runs": 0}
    contexts = sa.select(runs.c.trace_context, runs.c.namespace).where(runs.c.id.in_(doomed))
    found_contexts = (await conn.execute(contexts)).all()
    traces = {trace for context, _ in found_contexts if (trace := trace_id_of(context)) is not None}
    namespaces = {namespace for _, namespace in found_contexts}
    await conn.execute(run_events.delete().where(run_events.c.run_id.in_(doomed)))
    await conn.execute(tool_audit.delete().where(tool_audit.c.run_id.in_(doomed)))
    await conn.execute(tables.batch_items.delete().where(tables.batch_items.c.run_id.in_(doomed)))
    if traces:  # only the runs' own namespace's spans: another's may share a trace id
        spans = tables.spans
        await conn.execute(
            spans.delete().where(spans.c.trace_id.in_(traces) & spans.c.namespace.in_(namespaces))
        )
    await _release_holds(conn, doomed)  # a crashed call's: no one will take these over
    await conn.execute(runs.delete().where(runs.c.id.in_(doomed)))
    return {"runs": len(doomed)}


async def _release_holds(conn: AsyncConnection, run_ids: set[str]) -> int:
    """Give back what runs reserved on budgets and did not settle; returns how many
    reservations."""
    holds = tables.budget_holds
    released = (
        await conn.execute(
            holds.delete()
            .where(holds.c.run_id.in_(run_ids))
            .returning(holds.c.key, holds.c.tokens, holds.c.cost)
        )
    ).all()
    for key, tokens, cost in released:
        await _change_counter(conn, key, -int(tokens), -float(cost), 0, 0.0)
    return len(released)


async def _change_counter(
    conn: AsyncConnection,
    key: str,
    reserved_tokens: int,
    reserved_cost: float,
    tokens: int,
    cost: float,
) -> None:
    """Add to a budget line's reserved and spent totals (negative: take away)."""
    counters = tables.budget_counters
    await conn.execute(
        counters.update()
        .where(counters.c.key == key)
        .values(
            reserved_tokens=counters.c.reserved_tokens + reserved_tokens,
            reserved_cost=counters.c.reserved_cost + reserved_cost,
            spent_tokens=counters.c.spent_tokens + tokens,
            spent_cost=counters.c.spent_cost + cost,
        )
    )


def _users_memory(namespace: str, user: str, memory_id: str) -> sa.ColumnElement[bool]:
    """One memory, only if it is this user's: an id alone must not reach another's."""
    return (
        (user_memories.c.namespace == namespace)
        & (user_memories.c.user_id == user)
        & (user_memories.c.id == memory_id)
    )


def _reworded(
    namespace: str, user: str, memory_id: str, text: str, embedding: list[float]
) -> sa.Update:
    """A user's memory given a new wording (and its vector)."""
    return (
        user_memories.update()
        .where(_users_memory(namespace, user, memory_id))
        .values(text=text, embedding=embedding, updated_at=now())
    )


async def _memories_of(conn: AsyncConnection, namespace: str, user: str) -> list[MemoryRecord]:
    query = (
        sa.select(user_memories)
        .where((user_memories.c.namespace == namespace) & (user_memories.c.user_id == user))
        .order_by(user_memories.c.created_at, user_memories.c.id)
    )
    return [_memory(row) for row in (await conn.execute(query)).mappings()]


def _memory_row(memory: MemoryRecord) -> dict[str, Any]:
    return {
        "id": memory.id,
        "namespace": memory.namespace,
        "user_id": memory.user,
        "text": memory.text,
        "embedding": memory.embedding,
        "run_id": memory.run_id,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }


def _memory(row: RowMapping) -> MemoryRecord:
    return MemoryRecord(
        id=row["id"],
        namespace=row["namespace"],
        user=row["user_id"],
        text=row["text"],
        embedding=list(row["embedding"]),
        run_id=row["run_id"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_utc(row["updated_at"]),  # type: ignore[arg-type]
    )


def _session(row: RowMapping) -> SessionRecord:
    return SessionRecord(
        id=row["id"],
        namespace=row["namespace"],
        agent=row["agent"],
        summary=row["summary"],
        metadata=row["metadata"] or {},
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        updated_at=_utc(row["updated_at"]),  # type: ignore[arg-type]
        key_id=row["key_id"],
    )


async def _refuse_if_session_active(conn: AsyncConnection, session_id: str, doing: str) -> None:
    active = await conn.execute(
        sa.select(runs.c.id)
        .where(
            (runs.c.session_id == session_id)
            & runs.c.status.in_([status.value for status in ACTIVE_STATUSES])
        )
        .limit(1)
    )
    busy = active.scalar()
    if busy is not None:
        raise SessionBusyError(
            f"session {session_id!r} has run {busy!r} still active; cannot {doing} now",
            hint="wait for that run to end (or cancel it), then try again",
            details={"session": session_id, "run": busy},
        )


def _event(row: RowMapping) -> RunEvent:
    return RunEvent(
        run_id=row["run_id"],
        seq=row["seq"],
        namespace=row["namespace"],
        type=row["type"],
        data=row["data"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
    )


def _held(run_id: str, holder: str | None) -> Any:
    """The run, if ``holder`` still holds it (is running it)."""
    where = runs.c.id == run_id
    if holder is None:
        return where
    return where & (runs.c.worker == holder) & (runs.c.status == RunStatus.RUNNING.value)


NO_LIMIT = 2**31 - 1

_CLAIM = """
WITH RECURSIVE {choose}
{update}UPDATE runs
SET status = 'running', worker = :worker, started_at = coalesce(started_at, :now),
    lease_expires_at = :until, last_seq = last_seq + {started}
WHERE id = {choice}
    AND (status = 'queued' OR (status = 'running' AND lease_expires_at < :now))
RETURNING {columns}{recorded}
"""
"""Take a run (``claim_run``): the one ``choice`` names, found by the CTEs ``choose``
in small steps, each an index probe, never a sort of the whole queue. PostgreSQL
skips rows other claimers hold (``SKIP LOCKED``); SQLite has one writer at a time."""

_HEADS = """ns(namespace) AS (
    SELECT (SELECT r.namespace FROM runs r {queued} WHERE r.status = 'queued'
            ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1)
    UNION ALL
    SELECT (SELECT r.namespace FROM runs r {queued}
            WHERE r.status = 'queued' AND r.namespace > ns.namespace
            ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1)
    FROM ns WHERE ns.namespace IS NOT NULL
),
heads AS MATERIALIZED (
    SELECT ns.namespace,
           (SELECT max(r.priority) FROM runs r
            WHERE r.status = 'queued' AND r.namespace = ns.namespace) AS p,
           (SELECT count(*) FROM runs r
            WHERE r.status = 'running' AND r.namespace = ns.namespace
              AND r.lease_expires_at >= :now) AS n,
           (SELECT min({max_running_of_quota}) FROM resources q
            WHERE q.namespace = ns.namespace AND q.kind = 'Quota') AS cap
    FROM ns WHERE ns.namespace IS NOT NULL
)"""
"""Each namespace with queued runs: its best priority ``p``, its runs running ``n``
and its limit ``cap`` (its Quota's; None: the default)."""
_CHOOSE_FAIRLY = (
    _HEADS
    + """,
chosen AS (
    SELECT namespace, p FROM heads WHERE n < coalesce(cap, :max_running)
    ORDER BY p DESC, n, namespace LIMIT 1
)"""
)
_FAIR_CHOICE = """coalesce(
    (SELECT o.id FROM runs o WHERE o.status = 'running' AND o.lease_expires_at < :now
     ORDER BY o.priority DESC, o.created_at, o.id LIMIT 1 {lock}),
    (SELECT q.id FROM runs q
     WHERE q.status = 'queued' AND q.namespace = (SELECT namespace FROM chosen)
       AND q.priority = (SELECT p FROM chosen)
     ORDER BY q.created_at, q.id LIMIT 1 {lock})
)"""
"""The fair choice: a run whose worker died comes first (it was claimed before
anything queued now); else the namespaces with queued runs, walked one index probe
each (a loose index scan: a recursive CTE, as PostgreSQL and SQLite both lack a skip
scan); for each its best priority, its count of runs running and its limit (its
Quota, else the default); among those under their limit the namespace with the
highest priority, then the fewest running (fair share); then its oldest run at that
priority. (One query ordering every queued run by its namespace's count of running
runs took 4.6 s per claim at 20,000 queued.) The walk orders by all of
``ix_runs_queued``'s columns, so PostgreSQL's planner takes that index (of queued runs
only) over any other that leads with the namespace; SQLite's, without statistics, is
told to (``INDEXED BY``)."""

_CHOOSE_NEXT_OF = """head AS (
    SELECT r.id FROM runs r {queued} WHERE r.status = 'queued' AND r.namespace = :namespace
    ORDER BY r.namespace, r.priority DESC, r.created_at, r.id LIMIT 1 {lock}
)"""
_NEXT_OF_CHOICE = "(SELECT id FROM head)"
"""The next run of the namespace the process chose from its look at the queue (see
``SqlStore._claimable``): one probe, its first entry in ``ix_runs_queued``. Under four
busy worker processes the fair choice's probes in every claim cost a third of their
throughput."""

FAIR_SHARE_SECONDS = 0.1
"""How long a look at the queue (``SqlStore._claimable``) stands. Within it, a
namespace that starts queueing waits at most this long to be part of the fair choice
(at once for runs queued through this process, or announced to it on PostgreSQL), and
so do a namespace's higher priority, a Quota's new limit applied through another
process, a run whose worker died (its lease ran out up to this long ago), and runs
other processes claimed or ended."""

_QUEUE_VIEW = (
    "WITH RECURSIVE "
    + _HEADS
    + """
SELECT h.namespace, h.p, h.n, h.cap,
    EXISTS (SELECT 1 FROM runs o
            WHERE o.status = 'running' AND o.lease_expires_at < :now) AS expired
FROM heads h
"""
)
"""What the fair choice depends on: the namespaces' heads, and whether a run's lease
ran out."""


_CLAIM_STARTED_PG = """
), started AS (
    INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
    SELECT id, last_seq, namespace, 'run_started',
        CASE WHEN last_seq > 1 THEN CAST(:started AS jsonb) || '{"resumed": true}'
             ELSE CAST(:started AS jsonb) END, :now
    FROM claimed
)
SELECT * FROM claimed"""
"""With ``started`` on PostgreSQL: the claim stores the run's ``run_started`` event too
(marked ``resumed`` when the run had events before), in the same statement."""


def _dialect_parts(dialect: str) -> dict[str, str]:
    """The queue statements' words that differ between PostgreSQL and SQLite."""
    return {
        "lock": "FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else "",
        "queued": "INDEXED BY ix_runs_queued" if dialect == "sqlite" else "",
        "max_running_of_quota": (
            "CAST(q.spec ->> 'maxRunning' AS INTEGER)"
            if dialect == "postgresql"
            else "json_extract(q.spec, '$.maxRunning')"
        ),
    }


@functools.cache
def _queue_view_statement(dialect: str) -> sa.TextClause:
    return sa.text(_QUEUE_VIEW.format(**_dialect_parts(dialect))).bindparams(
        sa.bindparam("now", type_=tables.TS)
    )


def _claim_text(dialect: str, started: bool = False, next_of: bool = False) -> str:
    """The claim's text: the fair choice, or the next run of the namespace
    ``:namespace`` (``next_of``); storing the run's start in the same statement on
    PostgreSQL (``started``)."""
    parts = _dialect_parts(dialect)
    in_one = started and dialect == "postgresql"
    choose, choice = (
        (_CHOOSE_NEXT_OF, _NEXT_OF_CHOICE) if next_of else (_CHOOSE_FAIRLY, _FAIR_CHOICE)
    )
    return _CLAIM.format(
        choose=choose.format(**parts),
        choice=choice.format(**parts),
        update=", claimed AS (" if in_one else "",
        columns=_RUN_COLUMNS,
        started=int(started),
        recorded=_CLAIM_STARTED_PG if in_one else "",
    )


@functools.cache
def _claim_statement(dialect: str, started: bool, next_of: bool) -> sa.TextualSelect:
    return (
        sa.text(_claim_text(dialect, started, next_of))
        .bindparams(sa.bindparam("now", type_=tables.TS), sa.bindparam("until", type_=tables.TS))
        .columns(*runs.c)
    )


@functools.cache
def _claim_driver_statement(started: bool, next_of: bool) -> str:
    """The claim for asyncpg on PostgreSQL: the same text, its parameters numbered in
    ``_CLAIM_PARAMETERS``' order (those it has)."""
    statement = _claim_text("postgresql", started, next_of)
    present = [name for name in _CLAIM_PARAMETERS if re.search(rf":{name}\b", statement)]
    for number, name in enumerate(present, start=1):
        statement = re.sub(rf":{name}\b", f"${number}", statement)
    return statement


_CLAIM_PARAMETERS = ("now", "until", "worker", "max_running", "started", "namespace")
"""The claim's parameters, in the driver statement's order."""


def _claim_params(
    worker: str,
    lease_seconds: float,
    max_running: int | None,
    started: dict[str, Any] | None,
    next_of: str | None = None,
) -> dict[str, Any]:
    """The claim's parameters by name, those of its text only: ``started`` (as JSON)
    when given; the namespace whose next run to take (``next_of``), or the limit the
    fair choice applies."""
    stamp = now()
    params: dict[str, Any] = {
        "now": stamp,
        "until": stamp + timedelta(seconds=lease_seconds),
        "worker": worker,
    }
    if next_of is None:
        params["max_running"] = NO_LIMIT if max_running is None else max_running
    else:
        params["namespace"] = next_of
    if started is not None:
        params["started"] = json.dumps(started)
    return params


def _claim_driver_args(params: dict[str, Any]) -> tuple[Any, ...]:
    """``_claim_params`` in the driver statement's order."""
    return tuple(params[name] for name in _CLAIM_PARAMETERS if name in params)


# The statements of the hottest store call (several per run step), built once: building
# a statement and its cache key costs more CPU than running it on PostgreSQL.
_NEXT_SEQ = (
    runs.update()
    .where(runs.c.id == sa.bindparam("run"))
    .values(last_seq=runs.c.last_seq + sa.bindparam("by"))
    .returning(runs.c.last_seq)
)
_NEXT_SEQ_HELD = _NEXT_SEQ.where(runs.c.worker == sa.bindparam("holder"))
_INSERT_EVENT = run_events.insert()


@functools.cache
def _append_event_pg(held: bool, ledger: bool) -> str:
    """Number and store events (types ``$3``, data ``$4``, in order) in one statement;
    while held by ``$6`` if ``held``; with a usage-ledger line (the next seven
    parameters) if ``ledger``. Returns the last event's seq."""
    first = 7 if held else 6
    charged = ""
    if ledger:
        agent, model, day, given, cached, produced, cost = (f"${first + i}" for i in range(7))
        charged = f""", charged AS (
    INSERT INTO usage_ledger (namespace, agent, run_id, model, day, input_tokens,
        cached_input_tokens, output_tokens, cost, created_at)
    SELECT $2, {agent}, $1, {model}, {day}, {given}, {cached}, {produced}, {cost}, $5
    FROM numbered
)"""
    return f"""
WITH numbered AS (
    UPDATE runs SET last_seq = last_seq + cardinality($3::text[])
    WHERE id = $1{" AND worker = $6" if held else ""}
    RETURNING last_seq
){charged}, stored AS (
    INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
    SELECT $1, n.last_seq - cardinality($3::text[]) + e.i, $2, e.type, e.data, $5
    FROM numbered n, unnest($3::text[], $4::jsonb[]) WITH ORDINALITY AS e(type, data, i)
)
SELECT last_seq FROM numbered
"""


def _ledger_insert(entry: LedgerEntry) -> Any:
    agent, model, day, given, cached, produced, cost = _ledger_values(entry)
    return tables.usage_ledger.insert().values(
        namespace=entry.namespace,
        agent=agent,
        run_id=entry.run_id,
        model=model,
        day=day,
        input_tokens=given,
        cached_input_tokens=cached,
        output_tokens=produced,
        cost=cost,
        created_at=entry.created_at,
    )


def _ledger_values(entry: LedgerEntry) -> tuple[Any, ...]:
    """The line's own values, in the order the statements take them."""
    usage = entry.usage
    return (
        entry.agent,
        entry.model,
        entry.created_at.astimezone(UTC).date().isoformat(),
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.output_tokens,
        usage.cost,
    )


_RUN_COLUMNS = ", ".join(column.name for column in runs.c)

_STATISTICS_STALE = """
SELECT s.n_mod_since_analyze > 50 + 0.1 * greatest(s.n_live_tup, c.reltuples)
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = 'runs'::regclass
"""
_ANALYSING = """
SELECT CASE WHEN $1 THEN pg_try_advisory_lock(hashtext('hangar analyse ' || current_schema()))
            ELSE pg_advisory_unlock(hashtext('hangar analyse ' || current_schema())) END
"""


@functools.cache
def _finish_pg(held: bool) -> str:
    """End a run and store its last events (types ``$9``, data ``$10``, in order) in one
    statement; while held by ``$12`` if ``held``."""
    return f"""
WITH changed AS (
    UPDATE runs SET status = $2, reason = $3, last_seq = last_seq + cardinality($9::text[]),
        finished_at = coalesce($4, finished_at), timing = coalesce($5::jsonb, timing),
        output = coalesce($6::jsonb, output), error = coalesce($7::jsonb, error),
        usage = coalesce($8::jsonb, usage)
    WHERE id = $1{" AND worker = $12 AND status = 'running'" if held else ""}
    RETURNING {_RUN_COLUMNS}
), stored AS (
    INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
    SELECT c.id, c.last_seq - cardinality($9::text[]) + e.n, c.namespace, e.type, e.data, $11
    FROM changed c, unnest($9::text[], $10::jsonb[]) WITH ORDINALITY AS e(type, data, n)
)
SELECT * FROM changed
"""


@functools.cache
def _finish_and_claim_pg(next_of: bool) -> str:
    """A held run's end (``_finish_pg``'s parameters, ``$1``-``$12``) and the slot's
    next claim (the claim's, from ``$13``; ``next_of`` as for ``_claim_text``) in one
    statement. The claim happens only if the end did (the run was still held); rows
    come back marked ``finished`` or not."""
    finish = _finish_pg(True)
    ctes = finish[finish.index("changed AS") : finish.rindex("SELECT * FROM changed")].rstrip()
    claim = re.sub(
        r"\$(\d+)\b",
        lambda m: f"${int(m.group(1)) + 12}",
        _claim_driver_statement(True, next_of),
    )
    parts = [
        ("WITH RECURSIVE ", f"WITH RECURSIVE {ctes},\n"),
        # Only if the run was ended here.
        (
            "    AND (status = 'queued' OR",
            "    AND EXISTS (SELECT 1 FROM changed) AND (status = 'queued' OR",
        ),
        (
            "SELECT * FROM claimed",
            "SELECT true AS finished, * FROM changed UNION ALL SELECT false, * FROM claimed",
        ),
    ]
    if not next_of:
        # Never the run being ended (its lease may have run out while it was held);
        # nor is it counted as running (the statement sees the table as it was).
        parts.append(("o.lease_expires_at < $13", "o.lease_expires_at < $13 AND o.id <> $1"))
        parts.append(("r.lease_expires_at >= $13", "r.lease_expires_at >= $13 AND r.id <> $1"))
    for part, joined in parts:
        assert claim.count(part) == 1, f"the claim's text changed: {part!r}"
        claim = claim.replace(part, joined)
    return claim


_JSON_RUN_COLUMNS = tuple(c.name for c in runs.c if isinstance(c.type, sa.JSON))


async def _keep_session(connection: Any) -> None:
    return None


def _ending(
    status: RunStatus,
    reason: str | None,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
    usage: Usage | None,
    timing: dict[str, float] | None,
) -> dict[str, Any]:
    """A run's end as the column values to set."""
    values: dict[str, Any] = {"status": status.value, "reason": reason}
    if timing is not None:
        values["timing"] = timing
    if status.finished:
        values["finished_at"] = now()
    if output is not None:
        values["output"] = output
    if error is not None:
        values["error"] = error
    if usage is not None:
        values["usage"] = usage.to_dict()
    return values


def _finish_pg_args(
    run_id: str, values: dict[str, Any], holder: str | None, events: Events
) -> tuple[Any, ...]:
    """``_finish_pg``'s parameters."""
    return (
        run_id,
        values["status"],
        values["reason"],
        values.get("finished_at"),
        _json_or_none(values.get("timing")),
        _json_or_none(values.get("output")),
        _json_or_none(values.get("error")),
        _json_or_none(values.get("usage")),
        [type for type, _ in events],
        [json.dumps(data) for _, data in events],
        now(),
        *(() if holder is None else (holder,)),
    )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _driver_run(record: Any) -> RunRecord:
    """A run row as asyncpg returns it (JSON as text) to a record."""
    row = dict(record)
    for name in _JSON_RUN_COLUMNS:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return _run(row)  # type: ignore[arg-type]


def _not_held(run_id: str, holder: str | None) -> NoReturn:
    if holder is not None:
        raise LeaseLostError(
            f"run {run_id!r} is no longer held by {holder}: it has ended, or another "
            "worker took it over"
        )
    raise RunNotFoundError(f"run {run_id!r} not found")


RUN_STARTED = "run_started"

Events = Sequence[tuple[str, dict[str, Any]]]


async def _event_with(conn: Any, row: RowMapping, events: Events) -> None:
    """Store ``events`` in the transaction that changed the run's state (``row``, whose
    ``last_seq`` was already advanced past them): a worker dying between the two cannot
    leave a finished run without its final events."""
    if events:
        first = row["last_seq"] - len(events) + 1
        stamp = now()
        await conn.execute(
            run_events.insert(),
            [
                {
                    "run_id": row["id"],
                    "seq": first + i,
                    "namespace": row["namespace"],
                    "type": type,
                    "data": data,
                    "created_at": stamp,
                }
                for i, (type, data) in enumerate(events)
            ],
        )


class _NoRoom(Exception):
    def __init__(self, line: BudgetLine) -> None:
        self.line = line


P = ParamSpec("P")
R = TypeVar("R")


def _uninterrupted(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a store call to its end even when its caller is cancelled, then pass the
    cancellation on. SQLAlchemy's asyncio adapters answer a cancellation that lands
    mid-statement by tearing the connection down, and the cancellation itself can be
    lost on the way (seen: 4 in 10 cancels landing in an aiosqlite write never reached
    the run's task): a cancelled run then went on as if nothing had happened."""

    operation = method.__name__
    traced = operation in TRACED

    name = f"store {operation}"

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        store: Any = args[0]
        spans: WriteSpans = store.spans
        started = time.time_ns() if traced and spans.enabled else 0
        task = asyncio.ensure_future(method(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task  # statements are short; the caller's cancel waits for this one
            raise
        finally:
            if started:
                spans.record(name, started, store.span_attributes)

    return call


TRACED = frozenset(
    {
        "create_api_key",
        "apply_resource",
        "delete_resource",
        "create_run",
        "claim_run",
        "renew_leases",
        "finish_run",
        "finish_and_claim",
        "request_cancel",
        "park_run",
        "requeue_run",
        "append_event",
        "record_tool_call",
        "record_usage",
        "reserve_budget",
        "settle_budget",
        "release_budget_holds",
        "create_batch",
    }
)
"""The store calls that get a span: the writes. Reads are many and cheap (and writing
spans must not make more spans)."""


LONG_LIVED = frozenset({"listen"})
"""Store calls that run until cancelled: they must not be shielded from it."""


def _store_calls_run_whole(cls: type[T]) -> type[T]:
    for name, value in list(vars(cls).items()):
        if (
            inspect.iscoroutinefunction(value)
            and not name.startswith("_")
            and name not in LONG_LIVED
        ):
            setattr(cls, name, _uninterrupted(value))
    return cls


@_store_calls_run_whole
class SqlStore(KeyStore):
    """The ``Store`` over a SQLAlchemy async URL: ``sqlite+aiosqlite`` or ``postgresql+asyncpg``."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = url
        self.schema = schema
        self._driver_pool: Any = None
        self._driver_pool_lock = asyncio.Lock()
        self._span_writer: sqlite3.Connection | None = None
        self._span_writer_lock = threading.Lock()
        self._sqlite_path: str | None = None
        """The SQLite file, for the span writer's own connection (None in memory)."""
        self._cached: dict[tuple[str, str, str], tuple[float, Any]] = {}
        """Resources the hot path reads (a run's Model, a namespace's Budgets)."""
        self._queue_view: tuple[float, dict[str, list[int]] | None] = (0.0, None)
        """Until when (monotonic) claims choose their namespace from the last look at
        the queue, and its namespaces' ``[priority, running]`` (``_claimable``)."""
        self._claimed_here: dict[str, str] = {}
        """Runs claimed through this store and running, to their namespaces."""
        self._queue_changes = 0
        """Changes to what the fair choice depends on, seen here (``_queue_changed``)."""
        self.spans: WriteSpans = NoWriteSpans()
        """A span for each write; set by the runtime's telemetry."""
        self.span_attributes = {"db.system.name": sa.engine.make_url(url).get_backend_name()}
        self.dialect = sa.engine.make_url(url).get_backend_name()
        self._announcer = Announcer(self._driver) if self.dialect == "postgresql" else None
        """Announces stored events to other processes (PostgreSQL)."""
        connect_args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            connect_args["timeout"] = 30
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                state_file(Path(path))
                self._sqlite_path = path
        elif self.dialect == "postgresql":
            if schema:
                connect_args["server_settings"] = {"search_path": schema}
            kwargs.update(pool_size=10, max_overflow=10)
        self.engine: AsyncEngine = create_async_engine(
            url, echo=echo, connect_args=connect_args, **kwargs
        )
        if self.dialect == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine, "checkin", _note_checkin)
            event.listen(self.engine.sync_engine, "checkout", _ping_if_idle)

    # --- lifecycle ----------------------------------------------------------------------

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to call on every start, from
        any number of processes at once (on PostgreSQL an advisory lock lets one migrate
        while the others wait, then find nothing left to do; without it, four processes
        starting together deadlocked)."""
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7242364752)"))
            await conn.run_sync(_upgrade)

    async def close(self) -> None:
        if self._announcer is not None:
            await self._announcer.close()
        if self._driver_pool is not None:
            await self._driver_pool.close()
            self._driver_pool = None
        with self._span_writer_lock:
            if self._span_writer is not None:
                self._span_writer.close()
                self._span_writer = None
        await self.engine.dispose()

    async def listen(self, on_notice: Callable[[Notice], None], *, events: bool = True) -> None:
        if self.dialect != "postgresql":
            return

        def noted(notice: Notice) -> None:
            if notice.kind != "event":  # a run queued elsewhere, or maybe missed ones
                self._queue_changed(notice.namespace if notice.kind == "queued" else None)
            on_notice(notice)

        await listen_postgres(self.url, self.schema, noted, events=events)

    # --- resources ----------------------------------------------------------------------

    async def apply_resource(
        self, namespace: str, resource: Resource
    ) -> tuple[StoredResource, ApplyOutcome]:
        kind, name = resource.kind, resource.name
        self._forget_cached(namespace, kind)
        spec, spec_hash = resource.spec_json(), resource.spec_hash()
        labels, annotations = dict(resource.metadata.labels), dict(resource.metadata.annotations)
        key = (
            (resources.c.namespace == namespace)
            & (resources.c.kind == kind)
            & (resources.c.name == name)
        )
        stamp = now()
        try:
            async with self.engine.begin() as conn:
                current = (
                    (await conn.execute(sa.select(resources).where(key).with_for_update()))
                    .mappings()
                    .first()
                )
                if current is not None and current["spec_hash"] == spec_hash:
                    if current["labels"] == labels and current["annotations"] == annotations:
                        return _resource(current), "unchanged"
                    await conn.execute(
                        resources.update()
                        .where(key)
                        .values(labels=labels, annotations=annotations, updated_at=stamp)
                    )
                    outcome: ApplyOutcome = "configured"
                else:
                    last = await conn.scalar(
                        sa.select(sa.func.max(resource_versions.c.generation)).where(
                            (resource_versions.c.namespace == namespace)
                            & (resource_versions.c.kind == kind)
                            & (resource_versions.c.name == name)
                        )
                    )
                    generation = (last or 0) + 1
                    uid = current["uid"] if current is not None else str(uuid.uuid4())
                    await conn.execute(
                        resource_versions.insert().values(
                            namespace=namespace,
                            kind=kind,
                            name=name,
                            generation=generation,
                            uid=uid,
                            spec_hash=spec_hash,
                            spec=spec,
                            created_at=stamp,
                        )
                    )
                    values = dict(
                        uid=uid,
                        generation=generation,
                        spec_hash=spec_hash,
                        spec=spec,
                        labels=labels,
                        annotations=annotations,
                        updated_at=stamp,
                    )
                    if current is None:
                        await conn.execute(
                            resources.insert().values(
                                namespace=namespace,
                                kind=kind,
                                name=name,
                                created_at=stamp,
                                **values,
                            )
                        )
                        outcome = "created"
                    else:
                        await conn.execute(resources.update().where(key).values(**values))
                        outcome = "configured"
                row = (await conn.execute(sa.select(resources).where(key))).mappings().one()
                return _resource(row), outcome
        except IntegrityError as exc:
            raise ConflictError(
                f"{kind} {name!r} was changed by another request at the same time",
                hint="apply again",
            ) from exc
        finally:
            if kind == "Quota":  # committed: a limit may apply now
                self._queue_changed(None)

    async def get_resource(self, namespace: str, kind: str, name: str) -> StoredResource | None:
        query = sa.select(resources).where(
            (resources.c.namespace == namespace)
            & (resources.c.kind == kind)
            & (resources.c.name == name)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _resource(row)

    async def list_resources(self, namespace: str, kind: str) -> list[StoredResource]:
        query = (
            sa.select(resources)
            .where((resources.c.namespace == namespace) & (resources.c.kind == kind))
            .order_by(resources.c.name)
        )
        async with self.engine.connect() as conn:
            return [_resource(row) for row in (await conn.execute(query)).mappings()]

    async def cached_resource(self, namespace: str, kind: str, name: str) -> StoredResource | None:
        key = (namespace, kind, name)
        hit = self._cached.get(key)
        if hit is not None and time.monotonic() - hit[0] < RESOURCE_CACHE_SECONDS:
            cached: StoredResource = hit[1]
            return cached
        found = await self.get_resource(namespace, kind, name)
        if found is not None:  # a missing one is looked for again: it may be applied
            self._cached[key] = (time.monotonic(), found)
        return found

    async def cached_resources(self, namespace: str, kind: str) -> list[StoredResource]:
        key = (namespace, kind, "")
        hit = self._cached.get(key)
        if hit is not None and time.monotonic() - hit[0] < RESOURCE_CACHE_SECONDS:
            return list(hit[1])
        found = await self.list_resources(namespace, kind)
        self._cached[key] = (time.monotonic(), found)
        return list(found)

    def _forget_cached(self, namespace: str, kind: str) -> None:
        for key in [k for k in self._cached if k[0] == namespace and k[1] == kind]:
            self._cached.pop(key, None)

    async def list_all_resources(self, kind: str) -> list[StoredResource]:
        query = (
            sa.select(resources)
            .where(resources.c.kind == kind)
            .order_by(resources.c.namespace, resources.c.name)
        )
        async with self.engine.connect() as conn:
            return [_resource(row) for row in (await conn.execute(query)).mappings()]

    async def delete_resource(self, namespace: str, kind: str, name: str) -> bool:
        """Remove the live resource; its versions stay, so past runs still resolve."""
        self._forget_cached(namespace, kind)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                resources.delete().where(
                    (resources.c.namespace == namespace)
                    & (resources.c.kind == kind)
                    & (resources.c.name == name)
                )
            )
        return bool(result.rowcount)

    async def list_versions(self, namespace: str, kind: str, name: str) -> list[ResourceVersion]:
        query = (
            sa.select(resource_versions)
            .where(
                (resource_versions.c.namespace == namespace)
                & (resource_versions.c.kind == kind)
                & (resource_versions.c.name == name)
            )
            .order_by(resource_versions.c.generation)
        )
        async with self.engine.connect() as conn:
            return [_version(row) for row in (await conn.execute(query)).mappings()]

    async def get_version(
        self, namespace: str, kind: str, name: str, generation: int
    ) -> ResourceVersion | None:
        query = sa.select(resource_versions).where(
            (resource_versions.c.namespace == namespace)
            & (resource_versions.c.kind == kind)
            & (resource_versions.c.name == name)
            & (resource_versions.c.generation == generation)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _version(row)

    # --- sessions -------------------------------------------------------------------------

    async def create_session(self, session: SessionRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions.insert().values(
                    id=session.id,
                    namespace=session.namespace,
                    agent=session.agent,
                    metadata=session.metadata,
                    created_at=session.created_at,
                    updated_at=session.updated_at,
                    key_id=session.key_id,
                )
            )

    async def get_session(self, namespace: str, session_id: str) -> SessionRecord | None:
        query = sa.select(sessions).where(
            (sessions.c.namespace == namespace) & (sessions.c.id == session_id)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _session(row)

    async def list_sessions(
        self, namespace: str, *, agent: str | None = None, limit: int = 50
    ) -> list[SessionRecord]:
        query = sa.select(sessions).where(sessions.c.namespace == namespace)
        if agent is not None:
            query = query.where(sessions.c.agent == agent)
        query = query.order_by(sessions.c.updated_at.desc(), sessions.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_session(row) for row in (await conn.execute(query)).mappings()]

    async def session_runs(self, namespace: str, session_id: str) -> list[RunRecord]:
        query = (
            sa.select(runs)
            .where((runs.c.namespace == namespace) & (runs.c.session_id == session_id))
            .order_by(runs.c.created_at, runs.c.id)
        )
        async with self.engine.connect() as conn:
            return [_run(row) for row in (await conn.execute(query)).mappings()]

    async def delete_session(self, namespace: str, session_id: str) -> bool:
        async with self.engine.begin() as conn:
            found = await conn.execute(
                sessions.update()  # the lock a new turn would take first
                .where((sessions.c.namespace == namespace) & (sessions.c.id == session_id))
                .values(updated_at=now())
            )
            if found.rowcount == 0:
                return False
            await _refuse_if_session_active(conn, session_id, "delete it")
            turns = sa.select(runs.c.id).where(runs.c.session_id == session_id)
            await _delete_runs(conn, set((await conn.execute(turns)).scalars().all()))
            await conn.execute(sessions.delete().where(sessions.c.id == session_id))
        return True

    async def set_session_summary(
        self, namespace: str, session_id: str, summary: dict[str, Any]
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sessions.update()
                .where((sessions.c.namespace == namespace) & (sessions.c.id == session_id))
                .values(summary=summary)
            )

    # --- end users' memory ----------------------------------------------------------------

    async def add_memory(self, memory: MemoryRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(user_memories.insert().values(_memory_row(memory)))

    async def list_memories(self, namespace: str, user: str) -> list[MemoryRecord]:
        async with self.engine.connect() as conn:
            return await _memories_of(conn, namespace, user)

    async def change_memories(
        self, namespace: str, user: str, change: Callable[[list[MemoryRecord]], MemoryChanges]
    ) -> MemoryChanges:
        async with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(
                    sa.text(
                        "SELECT pg_advisory_xact_lock("
                        "hashtext('hangar memories ' || current_schema() || :user))"
                    ),
                    {"user": f"/{namespace}/{user}"},
                )
            else:  # SQLite's one write lock, taken before reading, not upgraded to after
                await conn.execute(
                    user_memories.update().where(sa.false()).values(id=user_memories.c.id)
                )
            changes = change(await _memories_of(conn, namespace, user))
            for memory_id, text, embedding in changes.updated:
                await conn.execute(_reworded(namespace, user, memory_id, text, embedding))
            if changes.added:
                await conn.execute(user_memories.insert(), [_memory_row(m) for m in changes.added])
        return changes

    async def update_memory(
        self, namespace: str, user: str, memory_id: str, text: str, embedding: list[float]
    ) -> MemoryRecord | None:
        async with self.engine.begin() as conn:
            await conn.execute(_reworded(namespace, user, memory_id, text, embedding))
            mine = _users_memory(namespace, user, memory_id)
            row = (await conn.execute(sa.select(user_memories).where(mine))).mappings().first()
        return None if row is None else _memory(row)

    async def delete_memory(self, namespace: str, user: str, memory_id: str) -> bool:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                user_memories.delete().where(_users_memory(namespace, user, memory_id))
            )
        return bool(done.rowcount)

    async def forget_user(self, namespace: str, user: str) -> dict[str, int]:
        theirs = (runs.c.namespace == namespace) & (runs.c.user_id == user)
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    sa.select(runs.c.id, runs.c.status, runs.c.session_id).where(theirs)
                )
            ).all()
            busy = [row.id for row in rows if RunStatus(row.status) in ACTIVE_STATUSES]
            if busy:
                raise UserBusyError(
                    f"user {user!r} has run {busy[0]!r} still active; forgetting them now "
                    "would leave it writing",
                    hint="cancel the run (hangar runs cancel) or wait for it, then retry",
                    details={"user": user, "runs": busy},
                )
            spoken = {row.session_id for row in rows if row.session_id is not None}
            doomed = {row.id for row in rows}
            if spoken:  # whole conversations: the other turns hold what they said too
                turns = sa.select(runs.c.id).where(runs.c.session_id.in_(spoken))
                doomed |= set((await conn.execute(turns)).scalars().all())
            counts = await _delete_runs(conn, doomed)
            if spoken:
                await conn.execute(sessions.delete().where(sessions.c.id.in_(spoken)))
            forgotten = await conn.execute(
                user_memories.delete().where(
                    (user_memories.c.namespace == namespace) & (user_memories.c.user_id == user)
                )
            )
        return {**counts, "sessions": len(spoken), "memories": forgotten.rowcount}

    # --- runs -----------------------------------------------------------------------------

    async def create_run(self, run: RunRecord) -> RunRecord:
        try:
            return await self._insert_run(run)
        except IntegrityError:
            raise ConflictError(f"run {run.id!r} exists already") from None

    async def _insert_run(self, run: RunRecord) -> RunRecord:
        async with self.engine.begin() as conn:
            if run.session_id is not None:
                await self._claim_session_turn(conn, run)
            await conn.execute(
                runs.insert().values(
                    id=run.id,
                    namespace=run.namespace,
                    agent=run.agent,
                    agent_generation=run.agent_generation,
                    status=run.status.value,
                    reason=run.reason,
                    input=run.input,
                    output=run.output,
                    error=run.error,
                    usage=run.usage.to_dict(),
                    last_seq=0,
                    cancel_requested=False,
                    worker=run.worker,
                    created_at=run.created_at,
                    started_at=run.started_at,
                    parent_id=run.parent_id,
                    depth=run.depth,
                    trace_context=run.trace_context,
                    lease_expires_at=run.lease_expires_at,
                    priority=run.priority,
                    session_id=run.session_id,
                    user_id=run.user,
                    key_id=run.key_id,
                )
            )
        if run.status is RunStatus.QUEUED:
            self._queue_changed(run.namespace)
        return run

    @staticmethod
    async def _claim_session_turn(conn: AsyncConnection, run: RunRecord) -> None:
        """Touch the session first: the row lock (PostgreSQL) or the write lock (SQLite)
        it takes makes two runs started at once for one session take turns, so the
        check for an active run below cannot pass for both."""
        touched = await conn.execute(
            sessions.update()
            .where((sessions.c.id == run.session_id) & (sessions.c.namespace == run.namespace))
            .values(updated_at=run.created_at)
        )
        if touched.rowcount == 0:
            raise SessionNotFoundError(
                f"session {run.session_id!r} not found in namespace {run.namespace!r}",
                hint="create one with POST /v1/sessions or `hangar sessions create AGENT`",
                details={"session": run.session_id},
            )
        await _refuse_if_session_active(conn, run.session_id or "", "start another run in it")

    async def get_run(self, namespace: str, run_id: str) -> RunRecord | None:
        query = sa.select(runs).where((runs.c.namespace == namespace) & (runs.c.id == run_id))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _run(row)

    async def list_runs(
        self,
        namespace: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        key_id: str | None = None,
        status: RunStatus | None = None,
    ) -> list[RunRecord]:
        query = sa.select(runs).where(runs.c.namespace == namespace)
        if agent is not None:
            query = query.where(runs.c.agent == agent)
        if key_id is not None:
            query = query.where(runs.c.key_id == key_id)
        if status is not None:
            query = query.where(runs.c.status == status.value)
        query = query.order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [_run(row) for row in (await conn.execute(query)).mappings()]

    async def claim_run(
        self,
        worker: str,
        lease_seconds: float = 30.0,
        max_running: int | None = None,
        *,
        started: dict[str, Any] | None = None,
    ) -> RunRecord | None:
        """Take the next run that is queued, or running under a lease that ran out (its
        worker died), or None. Next: the highest priority; among equals, the namespace
        with the fewest runs running (fair share: a namespace with a thousand queued runs
        does not starve one with two); then the oldest. With ``max_running``, a namespace
        that many runs are running in gets no more. If every claimable run of the chosen
        namespace is being claimed by others at this moment, None (the caller tries again
        at its next wake-up). One statement, so it is atomic on
        SQLite (a single writer) and on PostgreSQL (``SKIP LOCKED``: claimers never wait
        on each other and never take the same run). The claimer holds the run for
        ``lease_seconds``. With ``started``, the run's ``run_started`` event (that data,
        plus ``resumed`` when the run had events before) is stored with the claim: the
        returned run's ``last_seq`` is that event's."""
        next_of = await self._claimable(max_running)
        if next_of is not None:
            run = await self._claim(worker, lease_seconds, max_running, started, next_of)
            if run is not None:
                return run
            self._queue_changed(None)  # its runs are taken: look again
        return await self._claim(worker, lease_seconds, max_running, started, None)

    async def _claim(
        self,
        worker: str,
        lease_seconds: float,
        max_running: int | None,
        started: dict[str, Any] | None,
        next_of: str | None,
    ) -> RunRecord | None:
        """One claim statement: the fair choice, or ``next_of``'s next run. A run it
        claims counts as running here (``_running_here``)."""
        params = _claim_params(worker, lease_seconds, max_running, started, next_of)
        if self.dialect == "postgresql":  # several times a run: the driver's own pool
            pool = await self._driver()
            record = await pool.fetchrow(
                _claim_driver_statement(started is not None, next_of is not None),
                *_claim_driver_args(params),
            )
            if record is None:
                return None
            run = _driver_run(record)
            if started is not None:
                self._announce(run.namespace, run.id, run.last_seq, [RUN_STARTED])
            return self._running_here(run)
        statement = _claim_statement(self.dialect, started is not None, next_of is not None)
        async with self.engine.begin() as conn:
            row = (await conn.execute(statement, params)).mappings().first()
            if row is not None and started is not None:
                data = started_data(started, resumed=row["last_seq"] > 1)
                await _event_with(conn, row, [(RUN_STARTED, data)])
        return None if row is None else self._running_here(_run(row))

    async def _claimable(self, max_running: int | None) -> str | None:
        """The namespace to take the next run of, or None (choose fairly in the claim's
        own statement). Chosen here, as the claim's statement would, from a look at
        the queue: the highest priority, then the fewest runs running, counting the
        runs claimed and ended through this store since the look. Only while no limit
        applies (neither ``max_running`` nor any namespace's Quota: limits are counted
        exactly, by the claim) and no run's lease ran out. Looked at afresh every
        ``FAIR_SHARE_SECONDS`` at most, or at once when a change seen here may have
        made it wrong."""
        if max_running is not None:
            return None
        until, heads = self._queue_view
        if time.monotonic() >= until:
            changes = self._queue_changes
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(_queue_view_statement(self.dialect), {"now": now()})
                ).all()
            heads = None
            if rows and not any(row.expired or row.cap is not None for row in rows):
                heads = {row.namespace: [int(row.p), int(row.n)] for row in rows}
            if changes == self._queue_changes:  # else it may be stale already
                self._queue_view = (time.monotonic() + FAIR_SHARE_SECONDS, heads)
        if not heads:
            return None
        return min(
            heads, key=lambda namespace: (-heads[namespace][0], heads[namespace][1], namespace)
        )

    def _queue_changed(self, namespace: str | None) -> None:
        """A run was queued in ``namespace`` (None: anything the fair choice depends on
        may have changed): the next claim looks at the queue again, unless the
        namespace is among those it chooses from already."""
        self._queue_changes += 1
        heads = self._queue_view[1]
        if namespace is None or heads is None or namespace not in heads:
            self._queue_view = (0.0, None)

    def _running_here(self, run: RunRecord) -> RunRecord:
        """Count a run claimed here as running in its namespace, until it ends here."""
        self._claimed_here[run.id] = run.namespace
        heads = self._queue_view[1]
        if heads is not None and run.namespace in heads:
            heads[run.namespace][1] += 1
        return run

    def _not_running_here(self, run_id: str) -> None:
        namespace = self._claimed_here.pop(run_id, None)
        heads = self._queue_view[1]
        if namespace is not None and heads is not None and namespace in heads:
            heads[namespace][1] -= 1

    async def renew_leases(self, holders: dict[str, str], lease_seconds: float = 30.0) -> set[str]:
        """Extend the leases of runs (id to holding worker) still held by that worker;
        returns the ids renewed. A run missing from the answer was taken over."""
        if not holders:
            return set()
        until = now() + timedelta(seconds=lease_seconds)
        renewed: set[str] = set()
        async with self.engine.begin() as conn:
            for run_id, holder in holders.items():
                done = await conn.execute(
                    runs.update()
                    .where(
                        (runs.c.id == run_id)
                        & (runs.c.worker == holder)
                        & (runs.c.status == RunStatus.RUNNING.value)
                    )
                    .values(lease_expires_at=until)
                )
                if done.rowcount:
                    renewed.add(run_id)
        for run_id in set(holders) - renewed:  # taken over, or ended elsewhere
            self._not_running_here(run_id)
        return renewed

    async def refresh_queue_statistics(self) -> bool:
        """PostgreSQL plans a prepared statement once and keeps the plan: the claim,
        planned while the runs table held a few rows, went on walking the wrong index
        as it grew, and with autovacuum off (its analyse never came) four workers fell
        from 760 runs a second to 300 over 5,000 runs. New statistics make every
        process plan it again. Done when autovacuum's own rule says they are stale
        (changes since the last analyse over 50 + 10% of the rows), by one process at
        a time; with autovacuum on, it has usually done it already."""
        if self.dialect != "postgresql":
            return False
        pool = await self._driver()
        async with pool.acquire() as conn:
            if not await conn.fetchval(_STATISTICS_STALE):
                return False
            if not await conn.fetchval(_ANALYSING, True):
                return False  # another process is at it
            try:
                await conn.execute("ANALYZE runs")
            finally:
                await conn.fetchval(_ANALYSING, False)
        return True

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
        events: Events = (),
    ) -> tuple[RunRecord, RunRecord | None]:
        ending = _ending(status, reason, output, error, usage, timing)
        self._not_running_here(run_id)  # before its slot's next claim is chosen
        if self.dialect != "postgresql" or not events:
            finished = await self._finish(run_id, ending, holder, events)
            return finished, await self.claim_run(
                claim.worker, claim.lease_seconds, claim.max_running, started=claim.started
            )
        next_of = await self._claimable(claim.max_running)
        pool = await self._driver()
        params = _claim_params(
            claim.worker, claim.lease_seconds, claim.max_running, claim.started or {}, next_of
        )
        records = await pool.fetch(
            _finish_and_claim_pg(next_of is not None),
            *_finish_pg_args(run_id, ending, holder, events),
            *_claim_driver_args(params),
        )
        row = next((r for r in records if r["finished"]), None)
        if row is None:
            _not_held(run_id, holder)
        done = _driver_run(row)
        self._announce(done.namespace, done.id, done.last_seq, [type for type, _ in events])
        claimed = next((_driver_run(r) for r in records if not r["finished"]), None)
        if claimed is not None:
            self._announce(claimed.namespace, claimed.id, claimed.last_seq, [RUN_STARTED])
            self._running_here(claimed)
        elif next_of is not None:  # its runs are taken: look again, and choose anew
            self._queue_changed(None)
            claimed = await self._claim(
                claim.worker, claim.lease_seconds, claim.max_running, claim.started, None
            )
        return done, claimed

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
        events: Events = (),
    ) -> RunRecord:
        ending = _ending(status, reason, output, error, usage, timing)
        if holder is not None:
            self._not_running_here(run_id)
        return await self._finish(run_id, ending, holder, events)

    async def _finish(
        self, run_id: str, values: dict[str, Any], holder: str | None, events: Events
    ) -> RunRecord:
        if self.dialect == "postgresql" and events:
            return await self._finish_run_postgres(run_id, values, holder, events)
        if events:
            values["last_seq"] = runs.c.last_seq + len(events)
        return await self._change_run(_held(run_id, holder), values, run_id, holder, events)

    async def _finish_run_postgres(
        self,
        run_id: str,
        values: dict[str, Any],
        holder: str | None,
        events: Events,
    ) -> RunRecord:
        """A run's end and its last events as one statement on the driver (as
        ``append_event``): through SQLAlchemy it took four round trips and a
        transaction of its own, the worker's costliest call per run."""
        pool = await self._driver()
        record = await pool.fetchrow(
            _finish_pg(holder is not None), *_finish_pg_args(run_id, values, holder, events)
        )
        if record is None:
            _not_held(run_id, holder)
        run = _driver_run(record)
        self._announce(run.namespace, run.id, run.last_seq, [type for type, _ in events])
        return run

    async def request_cancel(self, namespace: str, run_id: str) -> tuple[RunRecord, bool] | None:
        where = (runs.c.namespace == namespace) & (runs.c.id == run_id)
        parked = (RunStatus.QUEUED.value, RunStatus.WAITING_APPROVAL.value)
        async with self.engine.begin() as conn:
            ended = (
                await conn.execute(
                    runs.update()
                    .where(where & runs.c.status.in_(parked))
                    .values(
                        status=RunStatus.CANCELLED.value,
                        reason="cancelled",
                        cancel_requested=True,
                        finished_at=now(),
                    )
                    .returning(runs.c.id)
                )
            ).first()
            await conn.execute(
                runs.update()
                .where(where & (runs.c.status == RunStatus.RUNNING.value))
                .values(cancel_requested=True)
            )
            row = (await conn.execute(sa.select(runs).where(where))).mappings().first()
        return None if row is None else (_run(row), ended is not None)

    async def park_run(
        self,
        run_id: str,
        usage: Usage,
        holder: str | None = None,
        events: Events = (),
    ) -> RunRecord:
        values: dict[str, Any] = {
            "status": RunStatus.WAITING_APPROVAL.value,
            "worker": None,
            "usage": usage.to_dict(),
        }
        if events:
            values["last_seq"] = runs.c.last_seq + len(events)
        running = _held(run_id, holder) & (runs.c.status == RunStatus.RUNNING.value)
        self._not_running_here(run_id)
        return await self._change_run(running, values, run_id, holder, events)

    async def _change_run(
        self,
        where: Any,
        values: dict[str, Any],
        run_id: str,
        holder: str | None,
        events: Events,
    ) -> RunRecord:
        """Update the run (only as its holder) and store ``events`` in the same transaction."""
        async with self.engine.begin() as conn:
            row = (
                (await conn.execute(runs.update().where(where).values(**values).returning(*runs.c)))
                .mappings()
                .first()
            )
            if row is None:
                _not_held(run_id, holder)
            await _event_with(conn, row, events)
        run = _run(row)
        self._announce(run.namespace, run.id, run.last_seq, [type for type, _ in events])
        return run

    async def requeue_run(self, namespace: str, run_id: str) -> bool:
        async with self.engine.begin() as conn:
            done = (
                await conn.execute(
                    runs.update()
                    .where(
                        (runs.c.namespace == namespace)
                        & (runs.c.id == run_id)
                        & (runs.c.status == RunStatus.WAITING_APPROVAL.value)
                    )
                    .values(status=RunStatus.QUEUED.value)
                    .returning(runs.c.id)
                )
            ).first()
        if done is not None:
            self._queue_changed(namespace)
        return done is not None

    async def append_event(
        self,
        run_id: str,
        namespace: str,
        type: str,
        data: dict[str, Any],
        *,
        holder: str | None = None,
        ledger: LedgerEntry | None = None,
        before: Events = (),
    ) -> RunEvent:
        """Append one event, after the held-back events ``before``; ``seq`` comes from
        the run row, so it is gap-free and ordered. With ``holder``, only while that
        worker still holds the run: a worker whose run was taken over (its lease ran
        out) can write nothing more to it. With ``ledger``, the model call's usage line
        goes in with it."""
        stamp = now()
        events = [*before, (type, data)]
        if self.dialect == "postgresql":
            seq = await self._append_events_postgres(
                run_id, namespace, events, holder, stamp, ledger
            )
            if seq is None:
                _not_held(run_id, holder)
            self._announce(namespace, run_id, seq, [kind for kind, _ in events])
            return RunEvent(run_id, seq, namespace, type, data, stamp)
        step = {"run": run_id, "by": len(events)}
        async with self.engine.begin() as conn:
            if holder is None:
                seq = await conn.scalar(_NEXT_SEQ, step)
            else:
                seq = await conn.scalar(_NEXT_SEQ_HELD, {**step, "holder": holder})
            if seq is None:
                _not_held(run_id, holder)
            await conn.execute(
                _INSERT_EVENT,
                [
                    {
                        "run_id": run_id,
                        "seq": seq - len(events) + i,
                        "namespace": namespace,
                        "type": kind,
                        "data": body,
                        "created_at": stamp,
                    }
                    for i, (kind, body) in enumerate(events, start=1)
                ],
            )
            if ledger is not None:
                await conn.execute(_ledger_insert(ledger))
        return RunEvent(run_id, seq, namespace, type, data, stamp)

    async def _append_events_postgres(
        self,
        run_id: str,
        namespace: str,
        events: Events,
        holder: str | None,
        stamp: datetime,
        ledger: LedgerEntry | None,
    ) -> int | None:
        """The hottest write, on PostgreSQL, as one statement on the driver: numbering
        and storing the events (and a model call's ledger line) in a single round trip,
        atomic without a transaction of our own. Through SQLAlchemy's execution and a
        transaction it cost 1.5 ms of CPU per event; this, 0.16 ms."""
        pool = await self._driver()
        value = await pool.fetchval(
            _append_event_pg(holder is not None, ledger is not None),
            run_id,
            namespace,
            [type for type, _ in events],
            [json.dumps(data) for _, data in events],
            stamp,
            *(() if holder is None else (holder,)),
            *(() if ledger is None else _ledger_values(ledger)),
        )
        return None if value is None else int(value)

    def _announce(self, namespace: str, run_id: str, last_seq: int, types: Sequence[str]) -> None:
        """Tell other processes (PostgreSQL) that a run's events ``types`` were stored,
        the last as ``last_seq``."""
        if self._announcer is not None and types:
            self._announcer.announce(namespace, run_id, last_seq, types)

    async def _driver(self) -> Any:
        return self._driver_pool or await self._open_driver_pool()

    async def _open_driver_pool(self) -> Any:
        """asyncpg's own pool, for the hot path: taking a connection from SQLAlchemy's
        pool and giving it back costs more than the statement (0.45 ms of CPU)."""
        import asyncpg  # type: ignore[import-untyped]

        async with self._driver_pool_lock:
            if self._driver_pool is None:
                settings = {"search_path": self.schema} if self.schema else {}
                self._driver_pool = await asyncpg.create_pool(
                    driver_dsn(self.url),
                    min_size=0,
                    max_size=DRIVER_POOL_SIZE,
                    # As with SQLAlchemy's pool: a connection idle this long may have
                    # died with a database restart; it is closed, a fresh one opened.
                    max_inactive_connection_lifetime=IDLE_PING_SECONDS,
                    server_settings=settings,
                    # The statements sent here leave no session state behind (no SET,
                    # LISTEN, advisory or cursor), so a connection goes back to the pool
                    # as it is: asyncpg's default reset is a round trip per statement.
                    reset=_keep_session,
                )
        return self._driver_pool

    async def list_events(
        self, namespace: str, run_id: str, *, after: int = 0, limit: int = 10_000
    ) -> list[RunEvent]:
        query = (
            sa.select(run_events)
            .where(
                (run_events.c.namespace == namespace)
                & (run_events.c.run_id == run_id)
                & (run_events.c.seq > after)
            )
            .order_by(run_events.c.seq)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [_event(row) for row in (await conn.execute(query)).mappings()]

    async def record_tool_call(self, entry: ToolAudit) -> None:
        """An audit line; a tool name (a model's or a client's choice) is cut to the
        column's 128 characters rather than failing the call it records."""
        values = dataclasses.asdict(entry) | {"tool": entry.tool[:128]}
        async with self.engine.begin() as conn:
            await conn.execute(tool_audit.insert().values(**values))

    async def list_tool_calls(
        self,
        namespace: str,
        *,
        run_id: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> list[ToolAudit]:
        query = sa.select(tool_audit).where(tool_audit.c.namespace == namespace)
        if run_id is not None:
            query = query.where(tool_audit.c.run_id == run_id)
        if agent is not None:
            query = query.where(tool_audit.c.agent == agent)
        query = query.order_by(tool_audit.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        fields = [f.name for f in dataclasses.fields(ToolAudit)]
        return [
            ToolAudit(
                **{name: row[name] for name in fields} | {"created_at": _utc(row["created_at"])}
            )
            for row in rows
        ]

    async def record_spans(self, spans: list[dict[str, Any]]) -> None:
        """Spans come by the dozen per run, so they are written on the driver: through
        SQLAlchemy's execution and transaction a flush cost about 1 ms of CPU, ten times
        the insert itself. A row per trace (its spans of this flush as one JSON array),
        encoded off the event loop; on SQLite written there too, on a connection of its
        own, on PostgreSQL in one ``executemany`` on the asyncpg pool."""
        if not spans:
            return
        if self.dialect == "postgresql":
            rows = await asyncio.to_thread(_span_rows, spans)
            pool = await self._driver()
            await pool.executemany(
                "INSERT INTO spans (trace_id, namespace, spans) VALUES ($1, $2, $3)", rows
            )
        elif self._sqlite_path is not None:
            await asyncio.to_thread(self._write_spans_sqlite, spans)
        else:  # an in-memory database: only the engine's own connections see it
            async with self.engine.begin() as conn:
                await conn.execute(
                    tables.spans.insert(),
                    [
                        {"trace_id": t, "namespace": ns, "spans": json.loads(b)}
                        for t, ns, b in _span_rows(spans)
                    ],
                )

    def _write_spans_sqlite(self, spans: list[dict[str, Any]]) -> None:
        rows = _span_rows(spans)
        with self._span_writer_lock:
            if self._span_writer is None:
                assert self._sqlite_path is not None
                writer = sqlite3.connect(
                    self._sqlite_path, timeout=30, isolation_level=None, check_same_thread=False
                )
                _sqlite_pragmas(writer, None)
                self._span_writer = writer
            writer = self._span_writer
            writer.execute("BEGIN")
            try:
                writer.executemany(
                    "INSERT INTO spans (trace_id, namespace, spans) VALUES (?, ?, ?)", rows
                )
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            writer.execute("COMMIT")

    async def list_spans(self, namespace: str, trace_id: str) -> list[SpanRecord]:
        query = (
            sa.select(tables.spans.c.spans)
            .where((tables.spans.c.trace_id == trace_id) & (tables.spans.c.namespace == namespace))
            .order_by(tables.spans.c.id)
        )
        async with self.engine.connect() as conn:
            batches = (await conn.execute(query)).scalars().all()
        found = [SpanRecord.from_dict(span) for batch in batches for span in batch]
        return sorted(found, key=lambda span: span.start_ns)

    async def record_usage(self, entry: LedgerEntry) -> None:
        """A ledger line on its own (a model call's usually goes in with its event)."""
        async with self.engine.begin() as conn:
            await conn.execute(_ledger_insert(entry))

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
        ledger = tables.usage_ledger
        columns = {
            "namespace": ledger.c.namespace,
            "agent": ledger.c.agent,
            "model": ledger.c.model,
            "run": ledger.c.run_id,
            "day": ledger.c.day,
        }
        keys = [columns[name].label(name) for name in group_by]
        query = sa.select(
            *keys,
            sa.func.count().label("calls"),
            sa.func.sum(ledger.c.input_tokens).label("input_tokens"),
            sa.func.sum(ledger.c.cached_input_tokens).label("cached_input_tokens"),
            sa.func.sum(ledger.c.output_tokens).label("output_tokens"),
            sa.func.sum(ledger.c.cost).label("cost"),
        ).where(ledger.c.namespace == namespace)
        for column, value in (
            (ledger.c.agent, agent),
            (ledger.c.model, model),
            (ledger.c.run_id, run_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(ledger.c.day >= since)
        if until is not None:
            query = query.where(ledger.c.day <= until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            {
                **{name: row[name] for name in group_by},
                "calls": int(row["calls"]),
                "input_tokens": int(row["input_tokens"] or 0),
                "cached_input_tokens": int(row["cached_input_tokens"] or 0),
                "output_tokens": int(row["output_tokens"] or 0),
                "cost": round(float(row["cost"] or 0.0), 10),
            }
            for row in rows
            if row["calls"]
        ]

    async def count_runs(self) -> list[tuple[str, str, int]]:
        query = sa.select(runs.c.namespace, runs.c.status, sa.func.count()).group_by(
            runs.c.namespace, runs.c.status
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(ns), str(status), int(count)) for ns, status, count in rows]

    async def reserve_budget(
        self, lines: Sequence[BudgetLine], tokens: int, cost: float, *, run_id: str | None = None
    ) -> BudgetLine | None:
        try:
            async with self.engine.begin() as conn:
                await self._reserve(conn, lines, tokens, cost)
                if run_id is not None:
                    stamp = now()
                    await conn.execute(
                        tables.budget_holds.insert(),
                        [
                            {
                                "run_id": run_id,
                                "key": line.key,
                                "tokens": tokens,
                                "cost": cost,
                                "created_at": stamp,
                            }
                            for line in lines
                        ],
                    )
        except _NoRoom as full:
            return full.line  # the whole reservation was rolled back
        return None

    async def _reserve(
        self, conn: Any, lines: Sequence[BudgetLine], tokens: int, cost: float
    ) -> None:
        counters = tables.budget_counters
        for line in lines:
            await self._ensure_counter(conn, line.key)
            room = counters.c.key == line.key
            if line.max_tokens is not None:
                room &= counters.c.spent_tokens + counters.c.reserved_tokens < line.max_tokens
            if line.max_cost is not None:
                room &= counters.c.spent_cost + counters.c.reserved_cost < line.max_cost
            # One conditional statement: row-locked on PostgreSQL, and SQLite has one
            # writer, so two reservations never both see the same room.
            done = await conn.execute(
                counters.update()
                .where(room)
                .values(
                    reserved_tokens=counters.c.reserved_tokens + tokens,
                    reserved_cost=counters.c.reserved_cost + cost,
                )
            )
            if done.rowcount == 0:
                raise _NoRoom(line)

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
        holds = tables.budget_holds
        async with self.engine.begin() as conn:
            for line in lines:
                held = (reserved_tokens, reserved_cost)
                if run_id is not None:
                    row = (
                        await conn.execute(
                            holds.delete()
                            .where((holds.c.run_id == run_id) & (holds.c.key == line.key))
                            .returning(holds.c.tokens, holds.c.cost)
                        )
                    ).first()
                    held = (0, 0.0) if row is None else (int(row[0]), float(row[1]))
                await _change_counter(conn, line.key, -held[0], -held[1], tokens, cost)

    async def release_budget_holds(self, run_id: str) -> int:
        async with self.engine.begin() as conn:
            return await _release_holds(conn, {run_id})

    async def budget_spent(self, key: str) -> tuple[int, float]:
        counters = tables.budget_counters
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(counters.c.spent_tokens, counters.c.spent_cost).where(
                        counters.c.key == key
                    )
                )
            ).first()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    async def _ensure_counter(self, conn: Any, key: str) -> None:
        counters = tables.budget_counters
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement: Any = pg_insert(counters).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(counters).on_conflict_do_nothing()
        await conn.execute(
            statement.values(
                key=key, spent_tokens=0, spent_cost=0.0, reserved_tokens=0, reserved_cost=0.0
            )
        )

    async def create_batch(
        self,
        batch_id: str,
        namespace: str,
        items: Sequence[BatchItem],
        key_id: str | None = None,
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                tables.batches.insert().values(
                    id=batch_id,
                    namespace=namespace,
                    total=len(items),
                    created_at=now(),
                    key_id=key_id,
                )
            )
            if items:
                await conn.execute(
                    tables.batch_items.insert(),
                    [
                        {
                            "batch_id": batch_id,
                            "line": item.line,
                            "custom_id": item.custom_id,
                            "run_id": item.run_id,
                            "error": item.error,
                        }
                        for item in items
                    ],
                )

    async def get_batch(
        self, namespace: str, batch_id: str, key_id: str | None = None
    ) -> tuple[datetime, list[tuple[BatchItem, RunRecord | None]]] | None:
        batches, items = tables.batches, tables.batch_items
        which = (batches.c.id == batch_id) & (batches.c.namespace == namespace)
        if key_id is not None:
            which &= batches.c.key_id == key_id
        async with self.engine.connect() as conn:
            head = (await conn.execute(sa.select(batches.c.created_at).where(which))).first()
            if head is None:
                return None
            rows = (
                (
                    await conn.execute(
                        sa.select(
                            items.c.line,
                            items.c.custom_id,
                            items.c.run_id,
                            items.c.error.label("item_error"),
                            *runs.c,
                        )
                        .select_from(items.outerjoin(runs, runs.c.id == items.c.run_id))
                        .where(items.c.batch_id == batch_id)
                        .order_by(items.c.line)
                    )
                )
                .mappings()
                .all()
            )
        found = []
        for row in rows:
            item = BatchItem(row["line"], row["custom_id"], row["run_id"], row["item_error"])
            found.append((item, _run(row) if row["id"] is not None else None))
        return _utc(head[0]), found  # type: ignore[return-value]


DRIVER_POOL_SIZE = 8
"""Connections of the driver's own pool (PostgreSQL), beside SQLAlchemy's."""
IDLE_PING_SECONDS = 5.0
"""A pooled connection idle this long is pinged before use (the database may have
restarted meanwhile); a busy one is not. SQLAlchemy's ``pool_pre_ping`` pings on every
checkout: one more round trip for every store call, a fifth of the dispatch rate."""


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception:
        raise sa.exc.DisconnectionError("the pooled connection is dead; taking a new one") from None


def _span_rows(spans: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    """A row per trace and namespace: their spans of this flush as one JSON array."""
    by_trace: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for span in spans:
        namespace = span["attributes"].get(SPAN_NAMESPACE)
        by_trace.setdefault((span["traceId"], namespace), []).append(span)
    return [(trace, ns, orjson.dumps(batch).decode()) for (trace, ns), batch in by_trace.items()]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")

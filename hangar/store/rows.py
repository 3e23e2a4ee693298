"""Rows to records, and what several of the store's concerns share: a run's row held
by its worker, the events stored with a change of its state, deleting runs whole."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from hangar.errors import (
    LeaseLostError,
    RunNotFoundError,
)
from hangar.ids import now
from hangar.ids import utc as _utc
from hangar.store import tables
from hangar.store.ledger import release_holds
from hangar.store.records import (
    MemoryRecord,
    ResourceVersion,
    RunEvent,
    RunRecord,
    RunStatus,
    SessionRecord,
    StoredResource,
    trace_id_of,
)
from hangar.store.tables import (
    run_events,
    runs,
    tool_audit,
)
from hangar.usage import Usage


def to_resource(row: RowMapping) -> StoredResource:
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


def to_version(row: RowMapping) -> ResourceVersion:
    return ResourceVersion(
        namespace=row["namespace"],
        kind=row["kind"],
        name=row["name"],
        generation=row["generation"],
        spec=row["spec"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
    )


def to_run(row: RowMapping) -> RunRecord:
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


def to_memory(row: RowMapping) -> MemoryRecord:
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


def to_session(row: RowMapping) -> SessionRecord:
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


def to_event(row: RowMapping) -> RunEvent:
    return RunEvent(
        run_id=row["run_id"],
        seq=row["seq"],
        namespace=row["namespace"],
        type=row["type"],
        data=row["data"],
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
    )


JSON_RUN_COLUMNS = tuple(c.name for c in runs.c if isinstance(c.type, sa.JSON))


def driver_run(record: Any) -> RunRecord:
    """A run row as asyncpg returns it (JSON as text) to a record."""
    row = dict(record)
    for name in JSON_RUN_COLUMNS:
        if isinstance(row.get(name), str):
            row[name] = json.loads(row[name])
    return to_run(row)  # type: ignore[arg-type]


def held_by(run_id: str, holder: str | None) -> Any:
    """The run, if ``holder`` still holds it (is running it)."""
    where = runs.c.id == run_id
    if holder is None:
        return where
    return where & (runs.c.worker == holder) & (runs.c.status == RunStatus.RUNNING.value)


def not_held(run_id: str, holder: str | None) -> NoReturn:
    if holder is not None:
        raise LeaseLostError(
            f"run {run_id!r} is no longer held by {holder}: it has ended, or another "
            "worker took it over"
        )
    raise RunNotFoundError(f"run {run_id!r} not found")


RUN_STARTED = "run_started"


Events = Sequence[tuple[str, dict[str, Any]]]


async def store_events_with(conn: Any, row: RowMapping | Mapping[str, Any], events: Events) -> None:
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


def json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def delete_runs(conn: AsyncConnection, ids: set[str]) -> dict[str, int]:
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
    await release_holds(conn, doomed)  # a crashed call's: no one will take these over
    await conn.execute(runs.delete().where(runs.c.id.in_(doomed)))
    return {"runs": len(doomed)}

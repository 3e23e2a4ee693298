"""The queue's statements, named in ``queries/queue.<database>.sql``, and their
parameters: the claim (the fair choice or a namespace's next run), the look at the
queue it is chosen from, and on PostgreSQL a run's end (with the next claim for the same task)
as one statement on the driver.

Written as SQL text: the fair choice walks an index by a recursive CTE, which
SQLAlchemy's expression language would only wrap."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from hangar.ids import now
from hangar.store.dialect import Dialect
from hangar.store.named_sql import DriverStatement, for_driver
from hangar.store.records import RunRecord, RunStatus
from hangar.store.rows import Events, json_or_none
from hangar.usage import Usage

NO_LIMIT = 2**31 - 1

POSTGRESQL_QUEUE = "queue.postgresql.sql"
SQLITE_QUEUE = "queue.sqlite.sql"


def driver(name: str) -> DriverStatement:
    """A statement of the queue on PostgreSQL's driver."""
    return for_driver(POSTGRESQL_QUEUE, name)


def claim_name(next_of: str | None) -> str:
    return "claim_fair" if next_of is None else "claim_next"


def claim_values(
    dialect: Dialect,
    worker: str,
    lease_seconds: float,
    max_running: int | None,
    started: dict[str, Any] | None,
    next_of: str | None = None,
    ending: str = "",
    held_back: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The claim's parameters: its run's ``started`` data (as JSON, stored by the
    statement on PostgreSQL; on SQLite, by the caller in the same transaction); the
    namespace whose next run to take (``next_of``), or the limit the fair choice
    applies and the run it must not choose (``ending``, being ended by the same
    statement; "": none); the agents whose runs stay queued (``held_back``)."""
    stamp = now()
    values: dict[str, Any] = {
        "now": stamp,
        "until": stamp + timedelta(seconds=lease_seconds),
        "worker": worker,
        "held_back": held_back_value(dialect, held_back),
    }
    if next_of is None:
        values["max_running"] = NO_LIMIT if max_running is None else max_running
        if dialect.driver_pool:
            values["ending"] = ending
    else:
        values["namespace"] = next_of
    if dialect.driver_pool:
        values["started"] = None if started is None else json.dumps(started)
    else:
        values["started_events"] = int(started is not None)
    return values


def held_back_value(dialect: Dialect, held_back: frozenset[str]) -> Any:
    """The ``:held_back`` parameter: NULL for none (the statements' common case, which
    costs them nothing), else a text array (PostgreSQL) or a JSON array (SQLite) of
    ``namespace/agent``."""
    if not held_back:
        return None
    return sorted(held_back) if dialect.driver_pool else json.dumps(sorted(held_back))


def create_args(run: RunRecord, events: Events) -> dict[str, Any]:
    """The ``create`` statement's parameters (both databases): the run and its first
    events, numbered up to ``last_seq``."""
    return {
        "id": run.id,
        "namespace": run.namespace,
        "agent": run.agent,
        "agent_generation": run.agent_generation,
        "status": run.status.value,
        "reason": run.reason,
        "input": json.dumps(run.input),
        "output": json_or_none(run.output),
        "error": json_or_none(run.error),
        "usage": json.dumps(run.usage.to_dict()),
        "last_seq": len(events),
        "types": [type for type, _ in events],
        "data": [json.dumps(data) for _, data in events],
        "worker": run.worker,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "parent_id": run.parent_id,
        "depth": run.depth,
        "trace_context": run.trace_context,
        "lease_expires_at": run.lease_expires_at,
        "priority": run.priority,
        "session_id": run.session_id,
        "user_id": run.user,
        "key_id": run.key_id,
    }


def end_values(
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


def end_args(
    run_id: str, values: dict[str, Any], holder: str | None, events: Events
) -> dict[str, Any]:
    """The ``end`` block's parameters on PostgreSQL: the run's end (``end_values``) and
    its last events, types and data in order."""
    return {
        "run_id": run_id,
        "status": values["status"],
        "reason": values["reason"],
        "finished_at": values.get("finished_at"),
        "timing": json_or_none(values.get("timing")),
        "output": json_or_none(values.get("output")),
        "error": json_or_none(values.get("error")),
        "usage": json_or_none(values.get("usage")),
        "types": [type for type, _ in events],
        "data": [json.dumps(data) for _, data in events],
        "now": now(),
        "holder": holder,
    }

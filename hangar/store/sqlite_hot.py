"""The hot path on SQLite, as functions of a plain ``sqlite3`` connection, run by the
writer or the reader thread (``sqlite_thread.py``). Writes: a run created, claimed, its
events, its end or park, a tool call's audit line, a model call's ledger line, leases
renewed. Reads: a run, its events, a look at the queue.

Values are stored exactly as SQLAlchemy stores them on SQLite (the rest of the store
reads these rows through it): times as ``YYYY-MM-DD HH:MM:SS.ffffff`` text in UTC,
JSON as text, booleans as 0 and 1.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from hangar.ids import now
from hangar.store.named_sql import statement
from hangar.store.queue_sql import SQLITE_QUEUE, create_args
from hangar.store.records import (
    LedgerEntry,
    RunEvent,
    RunRecord,
    RunStatus,
    ToolAudit,
    started_data,
)
from hangar.store.rows import RUN_STARTED, Events, json_or_none, to_run
from hangar.store.tables import runs

_JSON = frozenset(c.name for c in runs.c if isinstance(c.type, sa.JSON))
_TIMES = frozenset(c.name for c in runs.c if isinstance(c.type, sa.DateTime))


def stamp(value: datetime | None) -> str | None:
    """A time as SQLAlchemy's SQLite dialect stores it."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _time(text: str | None) -> datetime | None:
    return None if text is None else _at(text)


def run_of(row: sqlite3.Row) -> RunRecord:
    """A run row as the writer's connection returns it, to a record."""
    values: dict[str, Any] = dict(zip(row.keys(), row, strict=True))
    for name in _JSON:
        if isinstance(values[name], str):
            values[name] = json.loads(values[name])
    for name in _TIMES:
        values[name] = _time(values[name])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return to_run(values)  # type: ignore[arg-type]


def store_events(
    conn: sqlite3.Connection,
    run_id: str,
    namespace: str,
    last_seq: int,
    events: Events,
    at: datetime,
) -> None:
    """Store ``events`` numbered up to ``last_seq`` (the run row already advanced)."""
    first = last_seq - len(events) + 1
    when = stamp(at)
    conn.executemany(
        "INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [
            (run_id, first + i, namespace, kind, json.dumps(data), when)
            for i, (kind, data) in enumerate(events)
        ],
    )


def append_events(
    conn: sqlite3.Connection,
    run_id: str,
    namespace: str,
    events: Events,
    holder: str | None,
    at: datetime,
    ledger: LedgerEntry | None,
) -> int | None:
    """Number and store ``events`` (only while ``holder`` holds the run, if given), and
    a model call's ledger line; the last event's seq, or None if the run is not there
    or not held."""
    held = "" if holder is None else " AND worker = :holder"
    found = conn.execute(
        f"UPDATE runs SET last_seq = last_seq + :by WHERE id = :run{held} RETURNING last_seq",
        {"by": len(events), "run": run_id, "holder": holder},
    ).fetchone()
    if found is None:
        return None
    seq = int(found[0])
    store_events(conn, run_id, namespace, seq, events, at)
    if ledger is not None:
        insert_ledger(conn, ledger)
    return seq


def insert_ledger(conn: sqlite3.Connection, entry: LedgerEntry) -> None:
    agent, model, day, given, cached, produced, cost = entry.line()
    conn.execute(
        "INSERT INTO usage_ledger (namespace, agent, run_id, model, day, input_tokens,"
        " cached_input_tokens, output_tokens, cost, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.namespace,
            agent,
            entry.run_id,
            model,
            day,
            given,
            cached,
            produced,
            cost,
            stamp(entry.created_at),
        ),
    )


def insert_audit(conn: sqlite3.Connection, entry: ToolAudit) -> None:
    """A tool call's audit line; the tool's name cut to the column's 128 characters."""
    conn.execute(
        "INSERT INTO tool_audit (namespace, agent, run_id, tool, arguments_sha256, outcome,"
        " duration_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry.namespace,
            entry.agent,
            entry.run_id,
            entry.tool[:128],
            entry.arguments_sha256,
            entry.outcome,
            entry.duration_ms,
            stamp(entry.created_at),
        ),
    )


def insert_run(conn: sqlite3.Connection, run: RunRecord, events: Events) -> None:
    """A new run and its first ``events`` (its session's turn, if it has one, is
    claimed through the engine)."""
    conn.execute(statement(SQLITE_QUEUE, "create"), _stamped(create_args(run, events)))
    if events:
        store_events(conn, run.id, run.namespace, len(events), events, run.created_at)


def _stamped(values: Mapping[str, Any]) -> dict[str, Any]:
    """Statement parameters with their times as SQLite stores them."""
    return {key: stamp(v) if isinstance(v, datetime) else v for key, v in values.items()}


def claim(
    conn: sqlite3.Connection, name: str, values: Mapping[str, Any], started: dict[str, Any] | None
) -> RunRecord | None:
    """The queue's claim ``name`` (``queue.sqlite.sql``); with ``started``, the run's
    ``run_started`` event stored with it."""
    row = conn.execute(statement(SQLITE_QUEUE, name), _stamped(values)).fetchone()
    if row is None:
        return None
    run = run_of(row)
    if started is not None:
        data = started_data(started, resumed=run.last_seq > 1)
        store_events(
            conn, run.id, run.namespace, run.last_seq, [(RUN_STARTED, data)], values["now"]
        )
    return run


def change_run(
    conn: sqlite3.Connection,
    run_id: str,
    holder: str | None,
    values: Mapping[str, Any],
    events: Events,
    *,
    running: bool = False,
) -> RunRecord | None:
    """Set the run's columns ``values`` (JSON and times converted here), only as its
    ``holder`` if given (and only while running, if ``running``), and store ``events``
    with the change; None if the run is not there or not held."""
    params = {
        name: json_or_none(value) if name in _JSON else stamp(value) if name in _TIMES else value
        for name, value in values.items()
    }
    sets = [f"{name} = :{name}" for name in params]
    if events:
        sets.append(f"last_seq = last_seq + {len(events)}")
    where = "id = :run_id"
    if holder is not None:
        where += " AND worker = :holder AND status = 'running'"
    elif running:
        where += " AND status = 'running'"
    row = conn.execute(
        f"UPDATE runs SET {', '.join(sets)} WHERE {where} RETURNING *",
        {**params, "run_id": run_id, "holder": holder},
    ).fetchone()
    if row is None:
        return None
    run = run_of(row)
    if events:
        store_events(conn, run.id, run.namespace, run.last_seq, events, now())
    return run


def get_run(conn: sqlite3.Connection, namespace: str, run_id: str) -> RunRecord | None:
    row = conn.execute(
        "SELECT * FROM runs WHERE namespace = ? AND id = ?", (namespace, run_id)
    ).fetchone()
    return None if row is None else run_of(row)


def list_events(
    conn: sqlite3.Connection, namespace: str, run_id: str, after: int, limit: int
) -> list[RunEvent]:
    rows = conn.execute(
        "SELECT run_id, seq, namespace, type, data, created_at FROM run_events"
        " WHERE namespace = ? AND run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        (namespace, run_id, after, limit),
    )
    return [
        RunEvent(run, seq, ns, kind, json.loads(data), _at(created))
        for run, seq, ns, kind, data, created in rows
    ]


def queue_view(
    conn: sqlite3.Connection, at: datetime, held_back: str | None
) -> list[dict[str, Any]]:
    """The queue's heads (``queue.sqlite.sql``'s ``queue_view``), but the runs of the
    agents ``held_back`` (a JSON array of ``namespace/agent``, or None)."""
    values = {"now": stamp(at), "held_back": held_back}
    found = conn.execute(statement(SQLITE_QUEUE, "queue_view"), values)
    return [dict(zip(row.keys(), row, strict=True)) for row in found]


def renew(conn: sqlite3.Connection, holders: Mapping[str, str], until: datetime) -> set[str]:
    """Extend the leases of runs still held by their worker; the ids renewed."""
    renewed: set[str] = set()
    for run_id, holder in holders.items():
        done = conn.execute(
            "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND worker = ? AND status = ?",
            (stamp(until), run_id, holder, RunStatus.RUNNING.value),
        )
        if done.rowcount:
            renewed.add(run_id)
    return renewed

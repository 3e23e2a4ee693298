"""The queue's statements: the claim (the fair choice or a namespace's next run), the
look at the queue it is chosen from, and on PostgreSQL a run's end (with the slot's
next claim) as one statement on the driver.

Written as SQL text: the fair choice walks an index by a recursive CTE, which
SQLAlchemy's expression language would only wrap; the words that differ between
the databases come from the store's ``Dialect``."""

from __future__ import annotations

import functools
import json
import re
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from hangar.ids import now
from hangar.store import tables
from hangar.store.dialect import POSTGRESQL, Dialect
from hangar.store.records import (
    RunStatus,
)
from hangar.store.rows import Events, json_or_none
from hangar.store.tables import (
    runs,
)
from hangar.usage import Usage

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
``hangar.runtime.queue``): one probe, its first entry in ``ix_runs_queued``. Under four
busy worker processes the fair choice's probes in every claim cost a third of their
throughput."""


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


@functools.cache
def queue_view_statement(dialect: Dialect) -> sa.TextClause:
    return sa.text(_QUEUE_VIEW.format(**dialect.queue_words)).bindparams(
        sa.bindparam("now", type_=tables.TS)
    )


def _claim_text(dialect: Dialect, started: bool = False, next_of: bool = False) -> str:
    """The claim's text: the fair choice, or the next run of the namespace
    ``:namespace`` (``next_of``); storing the run's start in the same statement on
    PostgreSQL (``started``)."""
    parts = dialect.queue_words
    in_one = started and dialect.driver_pool
    choose, choice = (
        (_CHOOSE_NEXT_OF, _NEXT_OF_CHOICE) if next_of else (_CHOOSE_FAIRLY, _FAIR_CHOICE)
    )
    return _CLAIM.format(
        choose=choose.format(**parts),
        choice=choice.format(**parts),
        update=", claimed AS (" if in_one else "",
        columns=RUN_COLUMNS,
        started=int(started),
        recorded=_CLAIM_STARTED_PG if in_one else "",
    )


@functools.cache
def claim_statement(dialect: Dialect, started: bool, next_of: bool) -> sa.TextualSelect:
    return (
        sa.text(_claim_text(dialect, started, next_of))
        .bindparams(sa.bindparam("now", type_=tables.TS), sa.bindparam("until", type_=tables.TS))
        .columns(*runs.c)
    )


@functools.cache
def claim_driver_statement(started: bool, next_of: bool) -> str:
    """The claim for asyncpg on PostgreSQL: the same text, its parameters numbered in
    ``_CLAIM_PARAMETERS``' order (those it has)."""
    statement = _claim_text(POSTGRESQL, started, next_of)
    present = [name for name in _CLAIM_PARAMETERS if re.search(rf":{name}\b", statement)]
    for number, name in enumerate(present, start=1):
        statement = re.sub(rf":{name}\b", f"${number}", statement)
    return statement


_CLAIM_PARAMETERS = ("now", "until", "worker", "max_running", "started", "namespace")
"""The claim's parameters, in the driver statement's order."""


def claim_params(
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


def claim_driver_args(params: dict[str, Any]) -> tuple[Any, ...]:
    """``claim_params`` in the driver statement's order."""
    return tuple(params[name] for name in _CLAIM_PARAMETERS if name in params)


RUN_COLUMNS = ", ".join(column.name for column in runs.c)


STATISTICS_STALE = """
SELECT s.n_mod_since_analyze > 50 + 0.1 * greatest(s.n_live_tup, c.reltuples)
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.relid = 'runs'::regclass
"""


ANALYSING = """
SELECT CASE WHEN $1 THEN pg_try_advisory_lock(hashtext('hangar analyse ' || current_schema()))
            ELSE pg_advisory_unlock(hashtext('hangar analyse ' || current_schema())) END
"""


@functools.cache
def finish_pg(held: bool) -> str:
    """End a run and store its last events (types ``$9``, data ``$10``, in order) in one
    statement; while held by ``$12`` if ``held``."""
    return f"""
WITH changed AS (
    UPDATE runs SET status = $2, reason = $3, last_seq = last_seq + cardinality($9::text[]),
        finished_at = coalesce($4, finished_at), timing = coalesce($5::jsonb, timing),
        output = coalesce($6::jsonb, output), error = coalesce($7::jsonb, error),
        usage = coalesce($8::jsonb, usage)
    WHERE id = $1{" AND worker = $12 AND status = 'running'" if held else ""}
    RETURNING {RUN_COLUMNS}
), stored AS (
    INSERT INTO run_events (run_id, seq, namespace, type, data, created_at)
    SELECT c.id, c.last_seq - cardinality($9::text[]) + e.n, c.namespace, e.type, e.data, $11
    FROM changed c, unnest($9::text[], $10::jsonb[]) WITH ORDINALITY AS e(type, data, n)
)
SELECT * FROM changed
"""


@functools.cache
def finish_and_claim_pg(next_of: bool) -> str:
    """A held run's end (``finish_pg``'s parameters, ``$1``-``$12``) and the slot's
    next claim (the claim's, from ``$13``; ``next_of`` as for ``_claim_text``) in one
    statement. The claim happens only if the end did (the run was still held); rows
    come back marked ``finished`` or not."""
    finish = finish_pg(True)
    ctes = finish[finish.index("changed AS") : finish.rindex("SELECT * FROM changed")].rstrip()
    claim = re.sub(
        r"\$(\d+)\b",
        lambda m: f"${int(m.group(1)) + 12}",
        claim_driver_statement(True, next_of),
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


def finish_pg_args(
    run_id: str, values: dict[str, Any], holder: str | None, events: Events
) -> tuple[Any, ...]:
    """``finish_pg``'s parameters."""
    return (
        run_id,
        values["status"],
        values["reason"],
        values.get("finished_at"),
        json_or_none(values.get("timing")),
        json_or_none(values.get("output")),
        json_or_none(values.get("error")),
        json_or_none(values.get("usage")),
        [type for type, _ in events],
        [json.dumps(data) for _, data in events],
        now(),
        *(() if holder is None else (holder,)),
    )

"""Runs and the queue in SQL: created, claimed under a lease, renewed, ended, parked,
cancelled."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from hangar.errors import (
    ConflictError,
    SessionNotFoundError,
)
from hangar.ids import now
from hangar.store import sqlite_hot as on_sqlite
from hangar.store.engine import SqlCore
from hangar.store.queue_sql import (
    claim_name,
    claim_values,
    create_args,
    driver,
    end_args,
    end_values,
    held_back_value,
)
from hangar.store.records import (
    ClaimRequest,
    QueueHead,
    RunRecord,
    RunStatus,
)
from hangar.store.rows import (
    RUN_STARTED,
    Events,
    driver_run,
    held_by,
    not_held,
    store_events_with,
    to_run,
)
from hangar.store.sessions import refuse_if_session_active
from hangar.store.tables import (
    runs,
    sessions,
)
from hangar.usage import Usage


class SqlRunQueue(SqlCore):
    """The store's runs calls, over the core's engine."""

    async def create_run(self, run: RunRecord, events: Events = ()) -> RunRecord:
        try:
            return await self._insert_run(run, events)
        except (IntegrityError, sqlite3.IntegrityError):
            raise ConflictError(f"run {run.id!r} exists already") from None

    async def _insert_run(self, run: RunRecord, events: Events) -> RunRecord:
        if self._writer is not None and run.session_id is None:
            await self._write(lambda conn: on_sqlite.insert_run(conn, run, events))
        elif self.dialect.driver_pool and run.session_id is None:
            import asyncpg  # loaded with the pool

            pool = await self._driver()
            create = driver("create")
            try:
                await pool.execute(create.text, *create.args(create_args(run, events)))
            except asyncpg.UniqueViolationError:
                raise ConflictError(f"run {run.id!r} exists already") from None
        else:  # a session's turn is claimed through the engine
            await self._insert_run_engine(run, events)
        self._announce(run.namespace, run.id, len(events), [kind for kind, _ in events])
        if run.status is RunStatus.QUEUED:
            self._queue_changed(run.namespace)
        return run

    async def _insert_run_engine(self, run: RunRecord, events: Events) -> None:
        async with self.writing() as conn:
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
                    last_seq=len(events),
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
            first = {"id": run.id, "namespace": run.namespace, "last_seq": len(events)}
            await store_events_with(conn, first, events)

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
        await refuse_if_session_active(conn, run.session_id or "", "start another run in it")

    async def get_run(self, namespace: str, run_id: str) -> RunRecord | None:
        if self._reader is not None:
            return await self._read(lambda conn: on_sqlite.get_run(conn, namespace, run_id))
        # On PostgreSQL's driver: a caller waiting for a run reads it twice.
        pool = await self._driver()
        get = driver("get_run")
        record = await pool.fetchrow(
            get.text, *get.args({"namespace": namespace, "run_id": run_id})
        )
        return None if record is None else driver_run(record)

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
            return [to_run(row) for row in (await conn.execute(query)).mappings()]

    async def count_runs(self) -> list[tuple[str, str, int]]:
        query = sa.select(runs.c.namespace, runs.c.status, sa.func.count()).group_by(
            runs.c.namespace, runs.c.status
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [(str(ns), str(status), int(count)) for ns, status, count in rows]

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
        """Take the next run that is queued, or running under a lease that ran out (its
        worker died), or None. Next: the highest priority; among equals, the namespace
        with the fewest runs running (fair share: a namespace with a thousand queued runs
        does not starve one with two); then the oldest. With ``next_of``, that
        namespace's next run instead (the runtime chose it: ``hangar.runtime.queue``).
        With ``max_running``, a namespace that many runs are running in gets no more.
        If every claimable run of the chosen namespace is being claimed by others at
        this moment, None (the caller tries again at its next wake-up). One statement,
        so it is atomic on SQLite (a single writer) and on PostgreSQL (``SKIP LOCKED``:
        claimers never wait on each other and never take the same run). The claimer
        holds the run for ``lease_seconds``. With ``started``, the run's
        ``run_started`` event (that data, plus ``resumed`` when the run had events
        before) is stored with the claim: the returned run's ``last_seq`` is that
        event's. Queued runs of the agents ``held_back`` names (``namespace/agent``)
        are left queued (their Model has no room in the claiming process)."""
        values = claim_values(
            self.dialect,
            worker,
            lease_seconds,
            max_running,
            started,
            next_of,
            held_back=held_back,
        )
        if self.dialect.driver_pool:  # several times a run
            pool = await self._driver()
            claim = driver(claim_name(next_of))
            record = await pool.fetchrow(claim.text, *claim.args(values))
            if record is None:
                return None
            run = driver_run(record)
            if started is not None:
                self._announce(run.namespace, run.id, run.last_seq, [RUN_STARTED])
            return run
        return await self._write(
            lambda conn: on_sqlite.claim(conn, claim_name(next_of), values, started)
        )

    async def queue_heads(self, held_back: frozenset[str] = frozenset()) -> list[QueueHead] | None:
        """The namespaces with queued runs (but those of the agents ``held_back``), for
        the runtime to choose from as the claim's own statement would; None while the
        choice must be left to the claim: a run's lease ran out (its run is claimable
        again), or a limit applies somewhere (limits are counted exactly, by the
        claim)."""
        rows: list[dict[str, Any]]
        held = held_back_value(self.dialect, held_back)
        if self.dialect.driver_pool:
            view = driver("queue_view")
            pool = await self._driver()
            values = {"now": now(), "ending": "", "held_back": held}
            records = await pool.fetch(view.text, *view.args(values))
            rows = [dict(record) for record in records]
        else:
            at = now()
            rows = await self._read(lambda conn: on_sqlite.queue_view(conn, at, held))
        if any(row["expired"] or row["cap"] is not None for row in rows):
            return None
        return [QueueHead(row["namespace"], int(row["p"]), int(row["n"])) for row in rows]

    async def renew_leases(self, holders: dict[str, str], lease_seconds: float = 30.0) -> set[str]:
        """Extend the leases of runs (id to holding worker) still held by that worker;
        returns the ids renewed. A run missing from the answer was taken over."""
        if not holders:
            return set()
        until = now() + timedelta(seconds=lease_seconds)
        if self._writer is not None:
            return await self._write(lambda conn: on_sqlite.renew(conn, holders, until))
        renewed: set[str] = set()
        async with self.writing() as conn:
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
        return renewed

    async def refresh_queue_statistics(self) -> bool:
        """PostgreSQL plans a prepared statement once and keeps the plan: the claim,
        planned while the runs table held a few rows, went on walking the wrong index
        as it grew, and with autovacuum off (its analyse never came) four workers fell
        from 760 runs a second to 300 over 5,000 runs. New statistics make every
        process plan it again. Done when autovacuum's own rule says they are stale
        (changes since the last analyse over 50 + 10% of the rows), by one process at
        a time; with autovacuum on, it has usually done it already."""
        if not self.dialect.shared:
            return False
        pool = await self._driver()
        async with pool.acquire() as conn:
            if not await conn.fetchval(driver("statistics_stale").text):
                return False
            analysing = driver("analysing")
            if not await conn.fetchval(analysing.text, *analysing.args({"take": True})):
                return False  # another process is at it
            try:
                await conn.execute("ANALYZE runs")
            finally:
                await conn.fetchval(analysing.text, *analysing.args({"take": False}))
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
        next_of: str | None = None,
    ) -> tuple[RunRecord, RunRecord | None]:
        ending = end_values(status, reason, output, error, usage, timing)
        if self._writer is not None:
            return await self._finish_and_claim_sqlite(
                run_id, ending, holder, events, claim, next_of
            )
        if not events:
            finished = await self._finish(run_id, ending, holder, events)
            return finished, await self.claim_run(
                claim.worker,
                claim.lease_seconds,
                claim.max_running,
                started=claim.started,
                next_of=next_of,
                held_back=claim.held_back,
            )
        pool = await self._driver()
        values = claim_values(
            self.dialect,
            claim.worker,
            claim.lease_seconds,
            claim.max_running,
            claim.started or {},
            next_of,
            ending=run_id,
            held_back=claim.held_back,
        )
        values.update(end_args(run_id, ending, holder, events))
        both = driver("finish_and_claim_fair" if next_of is None else "finish_and_claim_next")
        records = await pool.fetch(both.text, *both.args(values))
        row = next((r for r in records if r["finished"]), None)
        if row is None:
            not_held(run_id, holder)
        done = driver_run(row)
        self._announce(done.namespace, done.id, done.last_seq, [type for type, _ in events])
        claimed = next((driver_run(r) for r in records if not r["finished"]), None)
        if claimed is not None:
            self._announce(claimed.namespace, claimed.id, claimed.last_seq, [RUN_STARTED])
        return done, claimed

    async def _finish_and_claim_sqlite(
        self,
        run_id: str,
        ending: dict[str, Any],
        holder: str,
        events: Events,
        request: ClaimRequest,
        next_of: str | None,
    ) -> tuple[RunRecord, RunRecord | None]:
        """A run's end and the next claim as one piece of the writer's work."""
        values = claim_values(
            self.dialect,
            request.worker,
            request.lease_seconds,
            request.max_running,
            request.started,
            next_of,
            held_back=request.held_back,
        )

        def both(conn: sqlite3.Connection) -> tuple[RunRecord | None, RunRecord | None]:
            done = on_sqlite.change_run(conn, run_id, holder, ending, events)
            if done is None:
                return None, None
            return done, on_sqlite.claim(conn, claim_name(next_of), values, request.started)

        done, claimed = await self._write(both)
        if done is None:
            not_held(run_id, holder)
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
        ending = end_values(status, reason, output, error, usage, timing)
        return await self._finish(run_id, ending, holder, events)

    async def _finish(
        self, run_id: str, values: dict[str, Any], holder: str | None, events: Events
    ) -> RunRecord:
        if self.dialect.driver_pool and events:
            return await self._finish_run_postgres(run_id, values, holder, events)
        return await self._change_run(run_id, holder, values, events)

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
        finish = driver("finish")
        record = await pool.fetchrow(
            finish.text, *finish.args(end_args(run_id, values, holder, events))
        )
        if record is None:
            not_held(run_id, holder)
        run = driver_run(record)
        self._announce(run.namespace, run.id, run.last_seq, [type for type, _ in events])
        return run

    async def request_cancel(self, namespace: str, run_id: str) -> tuple[RunRecord, bool] | None:
        where = (runs.c.namespace == namespace) & (runs.c.id == run_id)
        parked = (RunStatus.QUEUED.value, RunStatus.WAITING_APPROVAL.value)
        async with self.writing() as conn:
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
        return None if row is None else (to_run(row), ended is not None)

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
        return await self._change_run(run_id, holder, values, events, running=True)

    async def _change_run(
        self,
        run_id: str,
        holder: str | None,
        values: dict[str, Any],
        events: Events,
        *,
        running: bool = False,
    ) -> RunRecord:
        """Update the run (only as its holder; only while running, if ``running``) and
        store ``events`` in the same transaction."""
        if self._writer is not None:
            changed = await self._write(
                lambda conn: on_sqlite.change_run(
                    conn, run_id, holder, values, events, running=running
                )
            )
            if changed is None:
                not_held(run_id, holder)
            return changed
        where = held_by(run_id, holder)
        if running:
            where &= runs.c.status == RunStatus.RUNNING.value
        if events:
            values = {**values, "last_seq": runs.c.last_seq + len(events)}
        async with self.writing() as conn:
            row = (
                (await conn.execute(runs.update().where(where).values(**values).returning(*runs.c)))
                .mappings()
                .first()
            )
            if row is None:
                not_held(run_id, holder)
            await store_events_with(conn, row, events)
        run = to_run(row)
        self._announce(run.namespace, run.id, run.last_seq, [type for type, _ in events])
        return run

    async def requeue_run(self, namespace: str, run_id: str) -> bool:
        async with self.writing() as conn:
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

"""Change notices across processes (PostgreSQL LISTEN/NOTIFY): a client on gateway A
sees, event by event, a run that gateway B queued and worker C executes, with the
polls that would otherwise find them switched off. A dropped listening connection
comes back and says so (everyone catches up from the store)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from hangar.config import Settings
from hangar.runtime import queue, service, worker
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec import parse_document
from hangar.store.notices import (
    APPLICATION,
    CHANNEL,
    EVENTS_CHANNEL,
    parse_notice,
)
from hangar.store.records import ClaimRequest, Notice, RunStatus
from hangar.store.sql import SqlStore
from tests.conftest import POSTGRES_URL
from tests.helpers import agent, eventually, queued_run, scripted_model, tool_step


def test_a_notice_is_read_only_from_its_own_schema() -> None:
    assert parse_notice("s1 event default run_1 3 tool_call", "s1") == Notice(
        "event", "default", "run_1", 3, "tool_call"
    )
    assert parse_notice("s1 queued team run_2", "s1") == Notice("queued", "team", "run_2")
    assert parse_notice("s2 queued team run_2", "s1") is None
    assert parse_notice("s1 event default run_1 three tool_call", "s1") is None
    assert parse_notice("garbage", "s1") is None


async def listener_pid(store: SqlStore, last_channel: str) -> int | None:
    """The backend of the listening connection, by its application name, once it has
    sent its last LISTEN (connected alone, it would miss what is announced before)."""
    async with store.engine.connect() as conn:
        return (
            await conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :app "
                    "AND state = 'idle' AND query = :listen"
                ),
                {"app": f"{APPLICATION} {store.schema}", "listen": f'LISTEN "{last_channel}"'},
            )
        ).scalar()


@contextlib.asynccontextmanager
async def listening(
    schema: str, *, events: bool = True
) -> AsyncIterator[tuple[SqlStore, list[Notice], int, SqlStore]]:
    """A store listening for notices, and another (another process, as it were) that
    writes: yields the writer, the notices heard, the listening backend's pid and the
    listening store."""
    store = SqlStore(POSTGRES_URL, schema=schema)
    other = SqlStore(POSTGRES_URL, schema=schema)
    await store.migrate()
    heard: list[Notice] = []
    task = asyncio.create_task(store.listen(heard.append, events=events))
    try:
        last = EVENTS_CHANNEL if events else CHANNEL
        pid = await eventually(lambda: listener_pid(other, last), what="the listener listening")
        yield other, heard, pid, store
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.close()
        await other.close()


async def test_a_worker_process_hears_of_queued_runs_only(pg_schema: str) -> None:
    """It streams no run to anyone: every event of every run would be work for nothing."""
    async with listening(pg_schema, events=False) as (other, heard, _, _):
        run = await other.create_run(queued_run(agent="a"))
        await other.append_event(run.id, "default", "run_started", {})
        await asyncio.sleep(0.2)  # the event's announcement has gone
        second = await other.create_run(queued_run(agent="a"))
        await eventually(lambda: len(heard) == 2, what="two notices")
        assert heard == [
            Notice("queued", "default", run.id),
            Notice("queued", "default", second.id),
        ]


async def test_a_run_queued_by_another_process_gets_its_namespaces_share_at_once(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker taking the next runs of the one namespace with queued runs weighs
    namespaces again as soon as it hears of a run queued in another."""
    monkeypatch.setattr(queue, "FAIR_SHARE_SECONDS", 3600)  # only a notice ends the look
    async with listening(pg_schema, events=False) as (gateway, heard, _, worker_store):
        claims = queue.FairShare(worker_store)
        for _ in range(3):
            await gateway.create_run(queued_run("team-a", agent="a"))
        first = await claims.claim(ClaimRequest("w"))
        assert first is not None and first.namespace == "team-a"
        other = await gateway.create_run(queued_run("team-b", agent="a"))
        await eventually(lambda: Notice("queued", "team-b", other.id) in heard, what="notice")
        second = await claims.claim(ClaimRequest("w"))
        assert second is not None and second.id == other.id


async def test_the_store_announces_queued_runs_and_stored_events(pg_schema: str) -> None:
    async with listening(pg_schema) as (other, heard, pid, _):
        run = await other.create_run(queued_run(agent="a"))
        await other.append_event(run.id, "default", "run_started", {})
        await eventually(lambda: len(heard) == 2, what="two notices")
        assert heard == [
            Notice("queued", "default", run.id),
            Notice("event", "default", run.id, 1, "run_started"),
        ]

        async with other.engine.connect() as conn:  # the connection drops
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await eventually(lambda: Notice("resync") in heard, what="a resync after reconnecting")
        await other.append_event(run.id, "default", "run_finished", {})
        await eventually(lambda: len(heard) == 4, what="notices after reconnecting")
        assert heard[-1] == Notice("event", "default", run.id, 2, "run_finished")


async def test_every_event_a_write_stores_is_announced_in_order(pg_schema: str) -> None:
    """A claim that stores ``run_started``, an append with events held back before it,
    a finish with the run's last events: one notice per event, with its own seq."""
    async with listening(pg_schema) as (other, heard, _, _):
        run = await other.create_run(queued_run(agent="a"))
        claimed = await other.claim_run("w/0", started={"worker": "w"})
        assert claimed is not None and claimed.id == run.id
        await other.append_event(
            run.id, "default", "model_response", {}, holder="w/0", before=[("model_request", {})]
        )
        await other.finish_run(
            run.id,
            RunStatus.SUCCEEDED,
            holder="w/0",
            events=[("final", {}), ("run_finished", {})],
        )
        await eventually(lambda: len(heard) == 6, what="a notice per event")
        assert heard == [
            Notice("queued", "default", run.id),
            *(
                Notice("event", "default", run.id, seq, type)
                for seq, type in enumerate(
                    ["run_started", "model_request", "model_response", "final", "run_finished"],
                    start=1,
                )
            ),
        ]


async def test_a_client_on_one_gateway_follows_a_run_another_queued_and_a_worker_ran(
    pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No polling to fall back on: only notices can carry the news between processes.
    monkeypatch.setattr(worker, "POLL_SECONDS", 3600)
    monkeypatch.setattr(service, "FOLLOW_POLL_SECONDS", 3600)
    processes = {
        name: Runtime(
            Settings(home=tmp_path / name, telemetry="off"),
            store=SqlStore(POSTGRES_URL, schema=pg_schema),
        )
        for name in ("gateway_a", "gateway_b", "worker_c")
    }
    a, b, c = processes.values()
    await a.start(workers=0)
    await b.start(workers=0)
    await c.start(workers=1)
    try:
        for document in (
            scripted_model("m", tool_step("current_time"), {"text": "done"}),
            agent("clock", "m", tools=[{"builtin": "current_time"}]),
        ):
            resource, _ = parse_document(document)
            assert resource is not None
            await a.store.apply_resource("default", resource)
        await eventually(lambda: listener_count(a.store, 3), what="each process listening")

        async with asyncio.timeout(60):  # a guard against hanging, not a measurement
            run = await b.runs.start(
                "default", "clock", RunInput([{"role": "user", "content": "?"}])
            )
            seen = [item async for item in a.runs.follow("default", run.id)]
        assert [item.seq for item in seen] == list(range(1, len(seen) + 1))
        assert seen[-1].type == "run_finished"
        assert {"tool_call", "tool_result"} <= {item.type for item in seen}
        done = await a.runs.get("default", run.id)
        assert done.status == RunStatus.SUCCEEDED
        assert (done.worker or "").startswith(c.worker.id)  # executed in worker C
    finally:
        for runtime in processes.values():
            await runtime.stop()


async def listener_count(store: SqlStore, wanted: int) -> bool:
    async with store.engine.connect() as conn:
        count = (
            await conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :app"),
                {"app": f"{APPLICATION} {store.schema}"},
            )
        ).scalar()
    return count == wanted

"""Workers on a real SQLite store: every claimed run ends, whatever moment a cancel hits."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hangar.config import Settings
from hangar.ids import now
from hangar.runtime import worker as worker_module
from hangar.runtime.bus import Doorbell
from hangar.runtime.worker import Worker
from hangar.spec import parse_document
from hangar.store.records import RunRecord, RunStatus
from hangar.store.sql import SqlStore
from tests.conftest import POSTGRES_URL
from tests.helpers import agent, eventually, queued_run, scripted_model, worker_on


class WatchedClaims(SqlStore):
    """A store that tells ``claimed`` of every claim its workers make."""

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
        run = await super().claim_run(
            worker,
            lease_seconds,
            max_running,
            started=started,
            next_of=next_of,
            held_back=held_back,
        )
        self.claimed(run, next_of)
        return run

    def claimed(self, run: RunRecord | None, next_of: str | None) -> None:
        return None


class CancelOnClaim(WatchedClaims):
    """Cancels each run the moment it is claimed: before its task has taken a step."""

    worker: Worker

    def claimed(self, run: RunRecord | None, next_of: str | None) -> None:
        if run is not None:
            asyncio.get_running_loop().call_soon(self.worker.cancel_local, run.id)


async def with_agent(store: SqlStore) -> None:
    """Migrated, with agent ``a`` on a scripted model that answers at once."""
    await store.migrate()
    for document in (scripted_model("m", {"text": "hi"}), agent("a", "m")):
        resource, _ = parse_document(document)
        assert resource is not None
        await store.apply_resource("default", resource)


async def test_a_run_cancelled_before_its_first_step_still_ends_cancelled(tmp_path: Path) -> None:
    store = CancelOnClaim(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await with_agent(store)
    worker = worker_on(store, Settings(home=tmp_path))
    store.worker = worker
    run = await store.create_run(queued_run(agent="a"))
    worker.start(1)
    try:
        # Followed the way clients do: by its events, up to the last one. (The status
        # is written just before that event, in another statement.)
        deadline = time.monotonic() + 10
        while not (events := await store.list_events("default", run.id)) or (
            events[-1].type != "run_finished"
        ):
            assert time.monotonic() < deadline, f"run stuck after {[e.type for e in events]}"
            await asyncio.sleep(0.02)
        current = await store.get_run("default", run.id)
        assert current is not None
        assert (current.status, current.reason) == (RunStatus.CANCELLED, "cancelled")
    finally:
        await worker.stop()
        await store.close()


async def two_runs_on_one_slot(store: Any, tmp_path: Path) -> tuple[Worker, list[RunRecord]]:
    """Agent ``a`` on ``store``, two runs of it queued, and a worker of one slot (the
    store's ``worker``) started on them: the first run's end claims the second."""
    await with_agent(store)
    worker = worker_on(store, Settings(home=tmp_path))
    store.worker = worker
    runs = [await store.create_run(queued_run(agent="a")) for _ in range(2)]
    worker.start(1)
    return worker, runs


class CancelJustAfterTheEnd(SqlStore):
    """Cancels a run the moment its end is stored, before its worker hears back."""

    worker: Worker

    async def finish_and_claim(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        ended = await super().finish_and_claim(run_id, *args, **kwargs)
        self.worker.cancel_local(run_id)
        await asyncio.sleep(0)  # where a cancel would reach the run's task
        return ended


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_cancel_that_lands_as_the_run_ends_changes_nothing(
    kind: str, tmp_path: Path, pg_schema: str
) -> None:
    """The run ends once, as it was ending, and the next run its end claimed runs."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'h.db'}" if kind == "sqlite" else POSTGRES_URL
    store = CancelJustAfterTheEnd(url, schema=None if kind == "sqlite" else pg_schema)
    worker, runs = await two_runs_on_one_slot(store, tmp_path)
    try:
        for run in runs:

            async def ended(run_id: str = run.id) -> list[str] | None:
                events = await store.list_events("default", run_id)
                types = [e.type for e in events]
                return types if "run_finished" in types else None

            types = await eventually(ended, what="the run's end")
            await asyncio.sleep(0.2)  # time for a second end, were one coming
            assert [e.type for e in await store.list_events("default", run.id)] == types
            assert types.count("run_finished") == 1
            current = await store.get_run("default", run.id)
            assert current is not None and current.status is RunStatus.SUCCEEDED
    finally:
        await worker.stop()
        await store.close()


class RenewJustAfterTheEnd(SqlStore):
    """Renews the worker's leases the moment a run's end is stored, before its worker
    hears back: the heartbeat's turn coming at the worst time."""

    worker: Worker
    lost: list[set[str]]

    async def finish_and_claim(self, run_id: str, *args: Any, **kwargs: Any) -> Any:
        ended = await super().finish_and_claim(run_id, *args, **kwargs)
        self.lost.append(await self.worker.renew_leases())
        return ended


async def test_a_run_that_ends_as_its_lease_is_renewed_is_not_reported_taken_over(
    tmp_path: Path,
) -> None:
    store = RenewJustAfterTheEnd(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    store.lost = []
    worker, runs = await two_runs_on_one_slot(store, tmp_path)
    try:
        await eventually(lambda: len(store.lost) == 2, what="both ends")
        assert store.lost == [set(), set()]  # ended, so not renewed: not taken over
        for run in runs:
            current = await store.get_run("default", run.id)
            assert current is not None and current.status is RunStatus.SUCCEEDED
    finally:
        await worker.stop()
        await store.close()


async def test_a_child_run_whose_parent_lost_its_worker_is_stopped_not_finished(
    tmp_path: Path,
) -> None:
    """A child run runs inline in its parent's task. When their worker dies, both
    leases run out: the parent is taken over and goes on (an agent-tool call in flight
    is reported to it as interrupted); the child, taken over too, is stopped at once,
    without another model call, as no one awaits its answer."""
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await with_agent(store)
    gone = now() - timedelta(minutes=1)
    crashed = {"status": RunStatus.RUNNING, "started_at": gone, "lease_expires_at": gone}
    parent = await store.create_run(queued_run(agent="a", worker="gone/0", **crashed))
    child = await store.create_run(
        queued_run(agent="a", worker="gone/child", parent_id=parent.id, depth=1, **crashed)
    )
    worker = worker_on(store, Settings(home=tmp_path))
    worker.start(1)
    try:

        async def ended(run_id: str) -> RunRecord | None:
            current = await store.get_run("default", run_id)
            return current if current is not None and current.status.finished else None

        stopped = await eventually(lambda: ended(child.id), what="the child's end")
        assert (stopped.status, stopped.reason) == (RunStatus.CANCELLED, "parent_lost")
        assert stopped.error is not None and stopped.error["code"] == "parent_lost"
        types = [e.type for e in await store.list_events("default", child.id)]
        assert types == ["run_started", "error", "run_finished"]  # no model call
        resumed = await eventually(lambda: ended(parent.id), what="the parent's end")
        assert resumed.status is RunStatus.SUCCEEDED
    finally:
        await worker.stop()
        await store.close()


class CountClaims(WatchedClaims):
    claims = 0
    """A slot's attempts to claim: one that looked for the next run of the namespace
    its queue chose (``next_of``) and found it taken goes on to a plain claim."""

    def claimed(self, run: RunRecord | None, next_of: str | None) -> None:
        if next_of is None or run is not None:
            self.claims += 1


async def test_a_queued_run_costs_a_few_claims_however_many_runs_may_run(tmp_path: Path) -> None:
    """One claimer per process, not one per run it may execute: with room for 1,000
    runs, a queued run rings once and is claimed once, and the run's end looks for the
    next (taken with it on PostgreSQL)."""
    store = CountClaims(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await with_agent(store)
    worker = worker_on(store, Settings(home=tmp_path))
    bus = worker.bus
    worker.start(1000)
    try:
        await asyncio.sleep(0.2)  # the claimer has found nothing and waits
        store.claims = 0
        for _ in range(3):
            run = await store.create_run(queued_run(agent="a"))
            bus.wake_workers()
            deadline = time.monotonic() + 10
            while (current := await store.get_run("default", run.id)) is None or (
                current.status is not RunStatus.SUCCEEDED
            ):
                assert time.monotonic() < deadline, "the run was not taken"
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.05)  # the claimer is back to waiting
        # Per run: the claim that took it and the one its end made. (One waiting task
        # per run it may execute would make 1,000.) A poll timeout can add one.
        assert store.claims <= 3 * 2 + 4
    finally:
        await worker.stop()
        await store.close()


async def test_the_doorbell_counts_rings_and_says_when_to_claim_until_none_is_left() -> None:
    bell = Doorbell()
    bell.ring()  # the claimer was busy claiming: nobody waiting
    bell.ring()
    async with asyncio.timeout(1):
        assert await bell.wait(30) is True  # at once, once per ring: claim once
        assert await bell.wait(30) is True
    assert await bell.wait(0.05) is False  # timed out: claim until none is left
    bell.ring()
    rung = bell.rung
    bell.ring()  # came during a claim that then found nothing
    bell.found_none(rung)
    async with asyncio.timeout(1):
        assert await bell.wait(30) is True  # the later ring stands
    bell.ring_all()  # a notice may have been missed
    async with asyncio.timeout(1):
        assert await bell.wait(30) is False


async def test_a_runs_end_claims_the_next_run_in_the_same_statement(
    pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the statement that ends a run claims the next one for the same
    task: three queued runs, room for one, one claim of its own (and one more once the
    queue is empty), all three held under the first claim's name."""
    monkeypatch.setattr(worker_module, "POLL_SECONDS", 3600)
    store = CountClaims(POSTGRES_URL, schema=pg_schema)
    await with_agent(store)
    queued = [await store.create_run(queued_run(agent="a")) for _ in range(3)]
    worker = worker_on(store, Settings(home=tmp_path))
    worker.start(1)
    try:
        for run in queued:

            async def succeeded(run_id: str = run.id) -> RunRecord | None:
                current = await store.get_run("default", run_id)
                done = current is not None and current.status is RunStatus.SUCCEEDED
                return current if done else None

            done = await eventually(succeeded, what="the run's end")
            assert done.worker == f"{worker.id}/1"
        assert store.claims <= 2  # each end took the next: no claim of its own
    finally:
        await worker.stop()
        await store.close()

"""The store contract, run against a SQLite file and the real PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from hangar.errors import ConflictError, LeaseLostError
from hangar.ids import now
from hangar.roles import Role
from hangar.spec import parse_document
from hangar.spec.base import Resource
from hangar.store.records import (
    ClaimRequest,
    EncodedSpan,
    RunStatus,
    encoded_span,
    stored_span,
)
from hangar.store.sql import SqlStore
from hangar.store.tables import metadata
from hangar.telemetry.genai import NAMESPACE
from hangar.usage import Usage
from tests.conftest import POSTGRES_URL
from tests.helpers import agent, eventually, queued_run


def resource(name: str = "support", **spec: object) -> Resource:
    parsed, problems = parse_document(agent(name, "local", **spec))
    assert parsed is not None, problems
    return parsed


async def test_migrations_create_exactly_the_declared_schema(store: SqlStore) -> None:
    def diff(connection: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    async with store.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_migrate_is_idempotent(store: SqlStore) -> None:
    await store.apply_resource("default", resource())
    await store.migrate()
    assert await store.get_resource("default", "Agent", "support") is not None


async def test_apply_is_idempotent_and_versioned(store: SqlStore) -> None:
    first, outcome = await store.apply_resource("default", resource(instructions="v1"))
    assert (first.generation, outcome) == (1, "created")

    again, outcome = await store.apply_resource("default", resource(instructions="v1"))
    assert (again.generation, outcome) == (1, "unchanged")
    assert again.uid == first.uid

    changed, outcome = await store.apply_resource("default", resource(instructions="v2"))
    assert (changed.generation, outcome) == (2, "configured")
    assert changed.spec["instructions"] == "v2"

    versions = await store.list_versions("default", "Agent", "support")
    assert [(v.generation, v.spec["instructions"]) for v in versions] == [(1, "v1"), (2, "v2")]


async def test_label_change_does_not_raise_the_generation(store: SqlStore) -> None:
    await store.apply_resource("default", resource())
    labelled, _ = parse_document(
        agent("support", "local") | {"metadata": {"name": "support", "labels": {"team": "a"}}}
    )
    assert labelled is not None
    stored, outcome = await store.apply_resource("default", labelled)
    assert (stored.generation, outcome, stored.labels) == (1, "configured", {"team": "a"})


async def test_delete_keeps_versions_and_recreate_continues_numbering(store: SqlStore) -> None:
    await store.apply_resource("default", resource(instructions="v1"))
    assert await store.delete_resource("default", "Agent", "support")
    assert await store.get_resource("default", "Agent", "support") is None
    assert not await store.delete_resource("default", "Agent", "support")
    assert (await store.get_version("default", "Agent", "support", 1)) is not None
    again, outcome = await store.apply_resource("default", resource(instructions="v2"))
    assert (again.generation, outcome) == (2, "created")


async def test_namespaces_never_see_each_other(store: SqlStore) -> None:
    await store.apply_resource("team-a", resource())
    run = await store.create_run(queued_run("team-a"))
    await store.append_event(run.id, "team-a", "x", {})
    assert await store.get_resource("team-b", "Agent", "support") is None
    assert await store.list_resources("team-b", "Agent") == []
    assert await store.get_run("team-b", run.id) is None
    assert await store.list_events("team-b", run.id) == []
    assert await store.list_runs("team-b") == []
    assert await store.request_cancel("team-b", run.id) is None
    assert (await store.get_run("team-a", run.id)) is not None


async def test_api_keys_authenticate_only_their_secret(store: SqlStore) -> None:
    key, secret = await store.create_api_key("team-a", "ci")
    found = await store.authenticate(secret)
    assert found is not None and (found.id, found.namespace, found.admin) == (
        key.id,
        "team-a",
        False,
    )
    assert await store.authenticate(secret + "x") is None
    assert await store.authenticate("") is None


async def test_keys_have_a_role_an_expiry_a_revocation_and_a_last_use(store: SqlStore) -> None:
    soon = now() + timedelta(hours=1)
    viewer, secret = await store.create_api_key("team-a", "dash", role=Role.VIEWER, expires_at=soon)
    other, _ = await store.create_api_key("team-b", "ci", role=Role.RUNNER)
    found = await store.authenticate(secret)
    assert found is not None and found.role is Role.VIEWER and found.expires_at == soon
    assert found.unusable(now()) is None
    assert "expired" in (found.unusable(soon + timedelta(seconds=1)) or "")
    assert [k.id for k in await store.list_api_keys("team-a")] == [viewer.id]
    assert {k.id for k in await store.list_api_keys()} == {viewer.id, other.id}

    assert await store.revoke_api_key(viewer.id, "team-b") is None  # not that namespace's
    revoked = await store.revoke_api_key(viewer.id, "team-a")
    assert revoked is not None and revoked.revoked_at is not None
    again = await store.authenticate(secret)  # still found: the gateway says why it is refused
    assert again is not None and "revoked" in (again.unusable(now()) or "")

    used = now().replace(microsecond=0)
    await store.touch_api_key(other.id, used)
    [listed] = await store.list_api_keys("team-b")
    assert listed.last_used_at == used and listed.revoked_at is None


async def test_a_run_created_twice_is_refused_and_the_first_kept(store: SqlStore) -> None:
    run = await store.create_run(queued_run(input={"messages": [{"role": "user", "content": "a"}]}))
    with pytest.raises(ConflictError, match="exists already"):
        await store.create_run(queued_run(id=run.id))
    stored = await store.get_run("default", run.id)
    assert stored is not None and stored.input == run.input and stored.last_seq == 0
    assert await store.list_events("default", run.id) == []


async def test_claim_takes_runs_oldest_first_and_only_once(store: SqlStore) -> None:
    runs = [await store.create_run(queued_run()) for _ in range(5)]
    claims = await asyncio.gather(*(store.claim_run(f"w{i}") for i in range(8)))
    claimed = [c for c in claims if c is not None]
    assert sorted(c.id for c in claimed) == sorted(r.id for r in runs)
    assert all(c.status == RunStatus.RUNNING and c.started_at for c in claimed)
    assert await store.claim_run("late") is None


async def test_events_get_gap_free_sequence_numbers(store: SqlStore) -> None:
    run = await store.create_run(queued_run())
    await asyncio.gather(*(store.append_event(run.id, "default", "e", {"i": i}) for i in range(20)))
    events = await store.list_events("default", run.id)
    assert [e.seq for e in events] == list(range(1, 21))
    assert sorted(e.data["i"] for e in events) == list(range(20))
    assert [e.seq for e in await store.list_events("default", run.id, after=18)] == [19, 20]
    assert (await store.get_run("default", run.id)).last_seq == 20  # type: ignore[union-attr]


async def test_finish_records_outcome_and_usage(store: SqlStore) -> None:
    run = await store.create_run(queued_run())
    await store.claim_run("w")
    done = await store.finish_run(
        run.id,
        RunStatus.SUCCEEDED,
        reason="completed",
        output={"text": "hi"},
        usage=Usage(10, 5, 0.25),
    )
    assert (done.status, done.reason, done.output) == (
        RunStatus.SUCCEEDED,
        "completed",
        {"text": "hi"},
    )
    assert done.usage == Usage(10, 5, 0.25) and done.finished_at is not None


async def test_cancel_of_a_queued_run_is_immediate_and_running_is_flagged(store: SqlStore) -> None:
    waiting = await store.create_run(queued_run())
    cancelled = await store.request_cancel("default", waiting.id)
    assert cancelled is not None and cancelled[0].status == RunStatus.CANCELLED and cancelled[1]
    assert await store.claim_run("w") is None  # a cancelled run is never claimed
    again = await store.request_cancel("default", waiting.id)
    assert again is not None and not again[1]  # only the first cancel ended it

    running = await store.create_run(queued_run())
    await store.claim_run("w")
    flagged = await store.request_cancel("default", running.id)
    assert flagged is not None and not flagged[1]
    assert flagged[0].status == RunStatus.RUNNING and flagged[0].cancel_requested


async def test_a_parked_run_waits_outside_the_queue_until_requeued(store: SqlStore) -> None:
    run = await store.create_run(queued_run())
    await store.claim_run("w")
    parked = await store.park_run(run.id, Usage(3, 4, 0.5))
    assert (parked.status, parked.worker, parked.usage) == (
        RunStatus.WAITING_APPROVAL,
        None,
        Usage(3, 4, 0.5),
    )
    assert not parked.status.finished
    assert await store.claim_run("w") is None
    assert await store.requeue_run("default", run.id)
    assert not await store.requeue_run("default", run.id)  # only once
    claimed = await store.claim_run("w2")
    assert claimed is not None and claimed.id == run.id
    # A waiting run is cancelled at once, like a queued one.
    await store.park_run(run.id, Usage())
    ended = await store.request_cancel("default", run.id)
    assert ended is not None and ended[1] and ended[0].status == RunStatus.CANCELLED


@pytest.mark.parametrize("limit", [1, 3])
async def test_list_runs_newest_first_with_limit(store: SqlStore, limit: int) -> None:
    ids = [(await store.create_run(queued_run())).id for _ in range(3)]
    listed = [r.id for r in await store.list_runs("default", limit=limit)]
    assert listed == list(reversed(ids))[:limit]


async def test_list_all_resources_spans_namespaces(store: SqlStore) -> None:
    await store.apply_resource("team-b", resource("one"))
    await store.apply_resource("team-a", resource("two"))
    listed = [(r.namespace, r.name) for r in await store.list_all_resources("Agent")]
    assert listed == [("team-a", "two"), ("team-b", "one")]
    assert await store.list_all_resources("Model") == []


async def test_a_cancel_that_lands_during_a_write_reaches_the_caller_and_the_write_is_whole(
    store: SqlStore,
) -> None:
    run = await store.create_run(queued_run())
    for i in range(60):

        async def writes() -> None:
            for _ in range(5):
                await store.append_event(run.id, "default", "tick", {})
            await asyncio.sleep(3600)  # reached only if a cancel was lost

        task = asyncio.create_task(writes())
        await asyncio.sleep(0.0005 * (i % 20))  # land the cancel at varying points
        task.cancel()
        await asyncio.wait({task}, timeout=30)
        assert task.done() and task.cancelled(), f"cancel {i} was lost"
    events = await store.list_events("default", run.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no gap, no half write


async def test_a_run_whose_lease_runs_out_is_taken_over_and_its_old_worker_fenced(
    store: SqlStore,
) -> None:
    run = await store.create_run(queued_run())
    claimed = await store.claim_run("w1", lease_seconds=30)
    assert claimed is not None and claimed.worker == "w1" and claimed.lease_expires_at
    assert await store.claim_run("w2", 30) is None  # held while the lease runs
    assert await store.renew_leases({run.id: "w1"}, 0.2) == {run.id}  # the last renewal
    await asyncio.sleep(0.5)  # w1 stops renewing: as if it died
    taken = await store.claim_run("w2", 30)
    assert taken is not None and (taken.id, taken.worker) == (run.id, "w2")
    assert taken.started_at == claimed.started_at
    assert await store.renew_leases({run.id: "w1"}) == set()  # w1 learns it lost the run
    with pytest.raises(LeaseLostError, match="another worker took it over"):
        await store.append_event(run.id, "default", "tick", {}, holder="w1")
    with pytest.raises(LeaseLostError):
        await store.finish_run(run.id, RunStatus.SUCCEEDED, holder="w1")
    await store.append_event(run.id, "default", "tick", {}, holder="w2")
    done = await store.finish_run(run.id, RunStatus.SUCCEEDED, holder="w2")
    assert done.status == RunStatus.SUCCEEDED


async def test_processes_starting_together_migrate_once(pg_schema: str) -> None:
    from tests.conftest import POSTGRES_URL

    stores = [SqlStore(POSTGRES_URL, schema=pg_schema) for _ in range(4)]
    try:
        async with asyncio.timeout(120):  # without the lock they deadlocked
            await asyncio.gather(*(s.migrate() for s in stores))
        run = await stores[0].create_run(queued_run())
        assert (await stores[3].get_run("default", run.id)) is not None
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_workers_take_the_highest_priority_first_then_the_oldest(store: SqlStore) -> None:
    from dataclasses import replace

    low = [await store.create_run(replace(queued_run(), priority=-5)) for _ in range(2)]
    normal = [await store.create_run(queued_run()) for _ in range(2)]
    urgent = await store.create_run(replace(queued_run(), priority=10))
    order = []
    while (claimed := await store.claim_run("w")) is not None:
        order.append(claimed.id)
    assert order == [urgent.id, *(r.id for r in normal), *(r.id for r in low)]


async def test_namespaces_share_workers_fairly_and_within_their_limit(store: SqlStore) -> None:
    big = [await store.create_run(queued_run("team-a")) for _ in range(6)]
    small = [await store.create_run(queued_run("team-b")) for _ in range(2)]
    order = []
    while (claimed := await store.claim_run("w")) is not None:
        order.append(claimed.namespace)
    # Team b's two runs, queued after team a's six, are not left to the end.
    assert order == ["team-a", "team-b", "team-a", "team-b", "team-a", "team-a", "team-a", "team-a"]
    assert len(order) == len(big) + len(small)  # all eight were taken


async def test_a_runs_end_claims_fairly_when_namespaces_share_the_queue(store: SqlStore) -> None:
    """The run being ended no longer counts as running in its namespace."""
    for namespace in ("team-a", "team-a", "team-a", "team-b", "team-b"):
        await store.create_run(queued_run(namespace))
    held = await store.claim_run("w0/0")  # another slot's, running throughout
    assert held is not None and held.namespace == "team-a"
    claim = ClaimRequest("w1/0", 30, started={"worker": "w1"})
    run = await store.claim_run(claim.worker, claim.lease_seconds, started=claim.started)
    order = []
    while run is not None:
        order.append(run.namespace)
        _, run = await store.finish_and_claim(
            run.id, RunStatus.SUCCEEDED, claim, holder="w1/0", events=[("run_finished", {})]
        )
    assert order == ["team-b", "team-b", "team-a", "team-a"]


async def test_a_namespace_at_its_limit_waits_while_others_go_on(store: SqlStore) -> None:
    for _ in range(3):
        await store.create_run(queued_run("team-a"))
    await store.create_run(queued_run("team-b"))
    taken = []
    while (claimed := await store.claim_run("w", 30, max_running=2)) is not None:
        taken.append(claimed)
    assert sorted(r.namespace for r in taken) == ["team-a", "team-a", "team-b"]
    first = taken[0]
    await store.finish_run(first.id, RunStatus.SUCCEEDED)  # a slot frees up in team a
    third = await store.claim_run("w", 30, max_running=2)
    assert third is not None and third.namespace == "team-a"


async def test_runs_of_an_agent_held_back_stay_queued_while_others_are_claimed(
    store: SqlStore,
) -> None:
    """A claim leaves queued the runs of the agents it holds back (their Model has no
    room in the claiming process): the fair choice, a namespace's next run, the look at
    the queue, and a run's end claiming the next all skip them; nothing else does."""
    held = frozenset({"team-a/writer"})
    waiting = [await store.create_run(queued_run("team-a", "writer")) for _ in range(2)]
    other = await store.create_run(queued_run("team-a", "reader"))
    elsewhere = await store.create_run(queued_run("team-b", "writer"))

    async def namespaces_queued(held_back: frozenset[str]) -> list[str]:
        heads = await store.queue_heads(held_back)
        assert heads is not None
        return sorted(head.namespace for head in heads)

    assert await namespaces_queued(held) == ["team-a", "team-b"]  # team a's reader
    assert await namespaces_queued(held | {"team-a/reader"}) == ["team-b"]

    first = await store.claim_run("w", next_of="team-a", held_back=held)
    assert first is not None and first.id == other.id
    assert await store.claim_run("w", next_of="team-a", held_back=held) is None
    claim = ClaimRequest("w1/0", 30, held_back=held)
    _, following = await store.finish_and_claim(
        first.id, RunStatus.SUCCEEDED, claim, holder="w", events=[("run_finished", {})]
    )
    assert following is not None and following.id == elsewhere.id
    assert await store.claim_run("w", held_back=held) is None
    for run in waiting:  # still queued, and claimed in order once let go
        stored = await store.get_run("team-a", run.id)
        assert stored is not None and stored.status is RunStatus.QUEUED
    taken = [await store.claim_run("w"), await store.claim_run("w")]
    assert [run.id for run in taken if run is not None] == [r.id for r in waiting]


async def test_a_database_restart_costs_no_store_call(
    pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pooled connections the server dropped (as a restart does) are found dead when
    next taken after a pause, and replaced, before any statement is sent on them."""
    from hangar.store import dialect

    monkeypatch.setattr(dialect, "IDLE_PING_SECONDS", 0.2)  # as if the pauses were long
    store = SqlStore(POSTGRES_URL, schema=pg_schema)
    killer = SqlStore(POSTGRES_URL, schema=pg_schema)
    try:
        await store.migrate()
        run = await store.create_run(queued_run())
        await store.append_event(run.id, "default", "run_started", {})  # the driver's pool
        async with store.engine.connect() as conn:  # SQLAlchemy's pool's one connection
            mine = [(await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar()]
        mine.append(await store._driver_pool.fetchval("SELECT pg_backend_pid()"))
        async with killer.engine.connect() as conn:
            for pid in mine:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await asyncio.sleep(0.5)
        assert [r.id for r in await store.list_runs("default")] == [run.id]
        event = await store.append_event(run.id, "default", "run_finished", {})
        assert event.seq == 2
    finally:
        await store.close()
        await killer.close()


async def test_a_namespace_quota_overrides_the_default_limit(store: SqlStore) -> None:
    for namespace, limit in (("team-a", 1), ("team-b", 3)):
        quota, _ = parse_document(
            {
                "apiVersion": "hangar.dev/v1alpha1",
                "kind": "Quota",
                "metadata": {"name": "workers"},
                "spec": {"maxRunning": limit},
            }
        )
        assert quota is not None
        await store.apply_resource(namespace, quota)
    for namespace in ("team-a", "team-b", "team-c"):
        for _ in range(4):
            await store.create_run(queued_run(namespace))
    taken = []
    while (claimed := await store.claim_run("w", 30, max_running=2)) is not None:
        taken.append(claimed.namespace)
    # Team a's quota is below the default, team b's above it, team c has the default.
    assert sorted(taken) == ["team-a", "team-b", "team-b", "team-b", "team-c", "team-c"]


async def test_the_hot_paths_resource_cache_is_fresh_here_and_soon_elsewhere(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's Model and a namespace's Budgets are read from a cache: what this process
    applies or deletes is seen at once, what another process does within the cache's
    age, and a resource not found is never cached (it may be applied next)."""
    from hangar.store import resources
    from tests.helpers import eventually

    monkeypatch.setattr(resources, "RESOURCE_CACHE_SECONDS", 2.0)
    other = SqlStore(store.url, schema=store.schema)
    try:
        assert await store.cached_resource("default", "Agent", "support") is None
        await other.apply_resource("default", resource())
        first = await store.cached_resource("default", "Agent", "support")
        assert first is not None and first.generation == 1  # the miss was not kept
        assert [r.name for r in await store.cached_resources("default", "Agent")] == ["support"]

        await store.apply_resource("default", resource(instructions="v2"))  # here: at once
        again = await store.cached_resource("default", "Agent", "support")
        assert again is not None and again.generation == 2

        await other.apply_resource("default", resource(instructions="v3"))  # elsewhere
        stale = await store.cached_resource("default", "Agent", "support")
        assert stale is not None and stale.generation == 2

        async def caught_up() -> bool:
            found = await store.cached_resource("default", "Agent", "support")
            return found is not None and found.generation == 3

        await eventually(caught_up, what="the other process's change")
        await store.delete_resource("default", "Agent", "support")
        assert await store.cached_resources("default", "Agent") == []
        assert await store.cached_resource("default", "Agent", "support") is None
    finally:
        await other.close()


async def test_a_model_calls_event_and_its_ledger_line_are_stored_together(
    store: SqlStore,
) -> None:
    from hangar.ids import now
    from hangar.store.records import LedgerEntry

    run = await store.create_run(queued_run())
    claimed = await store.claim_run("w1")
    assert claimed is not None and claimed.id == run.id
    line = LedgerEntry(
        "default", "support", run.id, "m", Usage(input_tokens=10, output_tokens=5, cost=0.25), now()
    )
    event = await store.append_event(
        run.id, "default", "model_response", {"step": 1}, holder="w1", ledger=line
    )
    assert event.seq == 1
    with pytest.raises(LeaseLostError):  # not held: neither the event nor the line
        await store.append_event(
            run.id, "default", "model_response", {"step": 2}, holder="w2", ledger=line
        )
    [total] = await store.usage_summary("default", ["run"])
    assert (total["input_tokens"], total["output_tokens"], total["cost"]) == (10, 5, 0.25)
    assert [e.seq for e in await store.list_events("default", run.id)] == [1]


async def test_spans_are_kept_by_trace_in_time_order_across_flushes(store: SqlStore) -> None:
    def span(trace: str, span_id: str, start: int, **attributes: Any) -> EncodedSpan:
        return encoded_span(stored_span(
            trace, span_id, None, f"op {span_id}", "internal", start, start + 2_000_000,
            "unset", attributes, [],
        ))  # fmt: skip

    first, second = "a" * 32, "b" * 32
    ns = {NAMESPACE: "team-a"}
    await store.record_spans(
        [span(first, "2" * 16, 20, step=1, **ns), span(second, "9" * 16, 5, **ns)]
    )
    await store.record_spans([span(first, "1" * 16, 10, tool="current_time", tags=["x"], **ns)])
    await store.record_spans([])
    kept = await store.list_spans("team-a", first)
    assert [(s.span_id, s.start_ns) for s in kept] == [("1" * 16, 10), ("2" * 16, 20)]
    assert kept[0].attributes == {"tool": "current_time", "tags": ["x"], **ns}
    assert kept[0].to_dict()["durationMs"] == 2.0
    assert [s.trace_id for s in await store.list_spans("team-a", second)] == [second]
    assert await store.list_spans("team-a", "c" * 32) == []


async def test_a_trace_shows_each_namespace_only_its_own_spans(store: SqlStore) -> None:
    """Another namespace's caller may bring the same trace id: what it records under it
    is its own, and neither sees the other's (nor what no namespace made)."""

    def span(span_id: str, namespace: str | None) -> EncodedSpan:
        attributes = {} if namespace is None else {NAMESPACE: namespace}
        return encoded_span(
            stored_span("d" * 32, span_id, None, "op", "internal", 1, 2, "unset", attributes, [])
        )

    await store.record_spans([span("1" * 16, "team-a"), span("2" * 16, "team-b")])
    await store.record_spans([span("3" * 16, None)])
    assert [s.span_id for s in await store.list_spans("team-a", "d" * 32)] == ["1" * 16]
    assert [s.span_id for s in await store.list_spans("team-b", "d" * 32)] == ["2" * 16]


async def test_a_claim_can_store_the_runs_start_and_a_finish_its_last_events(
    store: SqlStore,
) -> None:
    run = await store.create_run(queued_run())
    claimed = await store.claim_run("w1/0", 0.2, started={"worker": "w1"})
    assert claimed is not None and claimed.last_seq == 1
    await store.append_event(run.id, "default", "model_request", {}, holder="w1/0")
    await asyncio.sleep(0.5)  # w1 died: its lease runs out
    taken = await store.claim_run("w2/0", 30, started={"worker": "w2"})
    assert taken is not None and taken.last_seq == 3
    done = await store.finish_run(
        run.id,
        RunStatus.SUCCEEDED,
        holder="w2/0",
        events=[("final", {"text": "done"}), ("run_finished", {"status": "succeeded"})],
    )
    assert done.last_seq == 5
    events = await store.list_events("default", run.id)
    assert [(e.seq, e.type, e.data) for e in events] == [
        (1, "run_started", {"worker": "w1"}),
        (2, "model_request", {}),
        (3, "run_started", {"worker": "w2", "resumed": True}),
        (4, "final", {"text": "done"}),
        (5, "run_finished", {"status": "succeeded"}),
    ]


async def test_events_held_back_are_stored_before_the_next_in_its_statement(
    store: SqlStore,
) -> None:
    """A worker holds a model request back and stores it with the response: both or
    neither, numbered in order; a worker that lost the run stores neither."""
    run = await store.create_run(queued_run())
    await store.claim_run("w1/0", 30, started={"worker": "w1"})
    response = await store.append_event(
        run.id,
        "default",
        "model_response",
        {"step": 1},
        holder="w1/0",
        before=[("model_request", {"step": 1}), ("memory", {"recalled": []})],
    )
    assert (response.seq, response.type) == (4, "model_response")
    with pytest.raises(LeaseLostError):
        await store.append_event(
            run.id, "default", "final", {}, holder="w2/0", before=[("model_request", {})]
        )
    events = await store.list_events("default", run.id)
    assert [(e.seq, e.type, e.data) for e in events] == [
        (1, "run_started", {"worker": "w1"}),
        (2, "model_request", {"step": 1}),
        (3, "memory", {"recalled": []}),
        (4, "model_response", {"step": 1}),
    ]
    assert (await store.get_run("default", run.id)).last_seq == 4  # type: ignore[union-attr]


async def test_the_queues_statistics_are_refreshed_once_they_are_stale(store: SqlStore) -> None:
    """On PostgreSQL, when the runs table has changed by more than autovacuum's rule
    allows since its last analyse, the store analyses it (new plans for the claim);
    not again until it has changed that much once more. SQLite has nothing to do."""
    for _ in range(60):
        await store.create_run(queued_run())
    if not store.dialect.shared:
        assert await store.refresh_queue_statistics() is False
        return
    await eventually(store.refresh_queue_statistics, what="stale statistics analysed")
    async with store.engine.connect() as conn:
        analysed = (
            await conn.execute(
                sa.text(
                    "SELECT last_analyze FROM pg_stat_user_tables WHERE relid = 'runs'::regclass"
                )
            )
        ).scalar()
    assert analysed is not None
    assert await store.refresh_queue_statistics() is False


async def test_a_runs_end_can_claim_the_slots_next_run(store: SqlStore) -> None:
    """One call (on PostgreSQL one statement) ends a held run and claims the next for
    the same slot, with its run_started; a worker that lost its run claims nothing."""
    first = await store.create_run(queued_run())
    second = await store.create_run(queued_run())
    claim = ClaimRequest("w1/0", 30, started={"worker": "w1"})
    taken = await store.claim_run(claim.worker, claim.lease_seconds, started=claim.started)
    assert taken is not None and taken.id == first.id
    finished, following = await store.finish_and_claim(
        first.id,
        RunStatus.SUCCEEDED,
        claim,
        holder="w1/0",
        events=[("final", {"text": "done"}), ("run_finished", {"status": "succeeded"})],
    )
    assert (finished.id, finished.status, finished.last_seq) == (first.id, RunStatus.SUCCEEDED, 3)
    assert following is not None
    assert (following.id, following.worker, following.last_seq) == (second.id, "w1/0", 1)
    events = await store.list_events("default", second.id)
    assert [(e.seq, e.type, e.data) for e in events] == [(1, "run_started", {"worker": "w1"})]

    third = await store.create_run(queued_run())
    with pytest.raises(LeaseLostError):
        await store.finish_and_claim(
            second.id, RunStatus.SUCCEEDED, claim, holder="w9/0", events=[("run_finished", {})]
        )
    still = await store.get_run("default", third.id)
    assert still is not None and still.status is RunStatus.QUEUED


async def test_a_deleted_run_gives_back_what_its_crashed_call_reserved(store: SqlStore) -> None:
    """A worker that stalled past its lease, reserved for one more call and died holds a
    reservation on a run another worker has ended since: forgetting the run's user
    gives it back with the run (no one will take a deleted run over)."""
    from hangar.store import tables
    from hangar.store.records import BudgetLine

    run = await store.create_run(queued_run(user="alice"))
    line = BudgetLine("default/daily/2026-11-26", 1000, None)
    assert await store.reserve_budget([line], 400, 0.0, run_id=run.id) is None
    await store.finish_run(run.id, RunStatus.SUCCEEDED)
    assert await store.forget_user("default", "alice")
    async with store.engine.connect() as conn:
        reserved = (
            await conn.execute(
                sa.select(tables.budget_counters.c.reserved_tokens).where(
                    tables.budget_counters.c.key == line.key
                )
            )
        ).scalar_one()
        holds = (
            await conn.execute(sa.select(sa.func.count()).select_from(tables.budget_holds))
        ).scalar_one()
    assert (reserved, holds) == (0, 0)

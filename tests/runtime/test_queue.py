"""The fair share of workers between namespaces, from a look at the queue: claims
choose as the claim's own statement would, and a change seen here ends the look."""

from __future__ import annotations

import pytest

from hangar.runtime import queue
from hangar.runtime.queue import FairShare
from hangar.spec import parse_document
from hangar.store.records import ClaimRequest, RunStatus
from hangar.store.sql import SqlStore
from tests.helpers import queued_run


@pytest.fixture
def one_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """A look at the queue stands for the whole test: only a change ends it."""
    monkeypatch.setattr(queue, "FAIR_SHARE_SECONDS", 3600)


@pytest.mark.usefixtures("one_look")
async def test_a_namespace_queueing_beside_a_lone_one_gets_its_share_at_once(
    store: SqlStore,
) -> None:
    """While one namespace alone has queued runs, claims take its next run without
    weighing namespaces, and that look at the queue stands a while; a run queued in
    another namespace through the same store ends it before the next claim."""
    claims = FairShare(store)
    for _ in range(3):
        await store.create_run(queued_run("team-a"))
    first = await claims.claim(ClaimRequest("w"))
    assert first is not None and first.namespace == "team-a"
    await store.create_run(queued_run("team-b"))
    second = await claims.claim(ClaimRequest("w"))
    assert second is not None and second.namespace == "team-b"  # a: one running, b: none


@pytest.mark.usefixtures("one_look")
async def test_claims_share_namespaces_from_one_look_counting_their_own_claims_and_ends(
    store: SqlStore,
) -> None:
    """Between looks at the queue, claims choose the namespace as the claim itself would,
    counting the runs claimed and ended here since the look."""
    claims = FairShare(store)
    for namespace in ("team-a", "team-b"):
        for _ in range(3):
            await store.create_run(queued_run(namespace))
    taken = [await claims.claim(ClaimRequest(f"w{i}")) for i in range(4)]
    assert [r.namespace for r in taken if r] == ["team-a", "team-b", "team-a", "team-b"]
    assert taken[1] is not None
    await store.finish_run(taken[1].id, RunStatus.SUCCEEDED, holder="w1")  # a b run ends
    claims.ended(taken[1].id)
    following = await claims.claim(ClaimRequest("w9"))
    assert following is not None and following.namespace == "team-b"  # b: 1 running, a: 2


@pytest.mark.usefixtures("one_look")
async def test_a_quota_applied_binds_the_next_claim(store: SqlStore) -> None:
    claims = FairShare(store)
    for _ in range(3):
        await store.create_run(queued_run("team-a"))
    assert await claims.claim(ClaimRequest("w")) is not None  # team-a alone, no limit
    quota, _ = parse_document(
        {
            "apiVersion": "hangar.dev/v1alpha1",
            "kind": "Quota",
            "metadata": {"name": "workers"},
            "spec": {"maxRunning": 1},
        }
    )
    assert quota is not None
    await store.apply_resource("team-a", quota)
    assert await claims.claim(ClaimRequest("w")) is None  # team-a has its one run running


@pytest.mark.usefixtures("one_look")
async def test_a_runs_end_claims_the_next_fairly_from_the_look(store: SqlStore) -> None:
    """The run being ended no longer counts as running in its namespace when the
    slot's next run is chosen with its end."""
    claims = FairShare(store)
    for namespace in ("team-a", "team-a", "team-a", "team-b", "team-b"):
        await store.create_run(queued_run(namespace))
    held = await claims.claim(ClaimRequest("w0/0"))  # another slot's, running throughout
    assert held is not None and held.namespace == "team-a"
    claim = ClaimRequest("w1/0", 30, started={"worker": "w1"})
    run = await claims.claim(claim)
    order = []
    while run is not None:
        order.append(run.namespace)
        _, run = await claims.finish_and_claim(
            run.id, RunStatus.SUCCEEDED, claim, holder="w1/0", events=[("run_finished", {})]
        )
        if run is None:  # none with its end (or team b's were gone): the slot claims
            run = await claims.claim(claim)
    assert order == ["team-b", "team-b", "team-a", "team-a"]


async def test_a_namespace_at_its_limit_is_left_to_the_claim_to_count(store: SqlStore) -> None:
    """With a limit, the claim's statement chooses (it counts running runs exactly)."""
    claims = FairShare(store)
    for _ in range(3):
        await store.create_run(queued_run("team-a"))
    await store.create_run(queued_run("team-b"))
    limited = ClaimRequest("w", 30, max_running=1)
    taken = [await claims.claim(limited) for _ in range(3)]
    assert [r.namespace if r else None for r in taken] == ["team-a", "team-b", None]

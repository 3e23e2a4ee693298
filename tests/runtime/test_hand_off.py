"""A run started in a process whose worker has room and an empty queue goes to that
worker at once, created claimed; it is recorded as any claimed run is, so another
worker takes it over if this process dies. Past a namespace's limit, the queue decides."""

from __future__ import annotations

from datetime import timedelta

import httpx

from hangar.ids import now
from hangar.store.records import RunStatus
from hangar.store.sql import SqlStore
from tests.helpers import agent, doc, queued_run, scripted_model, wait_until

SLOW = [scripted_model("slow", {"text": "late", "delaySeconds": 0.3}), agent("slow", "slow")]


def _started(api: httpx.Client) -> dict[str, object]:
    response = api.post("/v1/agents/slow/runs", json={"input": "x", "wait": False})
    assert response.status_code == 202
    run: dict[str, object] = response.json()
    return run


def test_a_run_started_while_the_worker_is_idle_is_running_at_once(api: httpx.Client) -> None:
    api.post("/v1/apply", json=SLOW)
    # Once its worker has looked at the queue and found it empty (as after any run):
    assert api.post("/v1/agents/slow/runs", json={"input": "x"}).json()["status"] == "succeeded"
    run = _started(api)
    assert run["status"] == "running"  # held by this process's worker from the start
    done = wait_until(
        lambda: (r := api.get(f"/v1/runs/{run['id']}").json())["status"] != "running" and r
    )
    assert done["status"] == "succeeded" and done["output"]["text"] == "late"
    events = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
    assert events[0]["type"] == "run_started" and events[0]["seq"] == 1
    assert "resumed" not in events[0]["data"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_a_namespace_with_a_quota_goes_through_the_queue(api: httpx.Client) -> None:
    api.post("/v1/apply", json=[*SLOW, doc("Quota", "workers", {"maxRunning": 1})])
    first, second = _started(api), _started(api)
    assert first["status"] == second["status"] == "queued"
    for run in (first, second):
        done = wait_until(
            lambda r=run: (
                (x := api.get(f"/v1/runs/{r['id']}").json())["status"] == "succeeded" and x
            )
        )
        assert done["output"]["text"] == "late"


async def test_a_run_created_claimed_is_taken_over_when_its_lease_runs_out(
    store: SqlStore,
) -> None:
    """What a process that died leaves: a run created held, its lease run out."""
    stamp = now() - timedelta(minutes=1)
    held = queued_run(
        status=RunStatus.RUNNING,
        worker="gone/1",
        started_at=stamp,
        lease_expires_at=stamp + timedelta(seconds=30),
        last_seq=1,
    )
    await store.create_run(held, [("run_started", {"worker": "gone"})])
    stored = await store.get_run("default", held.id)
    assert stored is not None and stored.worker == "gone/1" and stored.last_seq == 1

    taken = await store.claim_run("here/1", started={"worker": "here"})
    assert taken is not None and taken.id == held.id and taken.worker == "here/1"
    events = await store.list_events("default", held.id)
    assert [(e.seq, e.type, e.data) for e in events] == [
        (1, "run_started", {"worker": "gone"}),
        (2, "run_started", {"worker": "here", "resumed": True}),
    ]

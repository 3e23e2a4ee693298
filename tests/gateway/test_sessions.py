"""Sessions: a conversation whose runs are its turns. Each turn sees the succeeded turns
before it; a failed turn leaves nothing behind; turns take turns; deleting a session
deletes its runs."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from hangar.errors import SessionBusyError, SessionNotFoundError
from hangar.ids import new_id, now
from hangar.store.records import RunRecord, SessionRecord
from hangar.store.sql import SqlStore
from tests.helpers import agent, event_data, queued_run, scripted_model


def turn(api: httpx.Client, session: str, text: str, **extra: Any) -> dict[str, Any]:
    response = api.post(f"/v1/sessions/{session}/runs", json={"input": text, **extra})
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


def seen_by_model(api: httpx.Client, run_id: str) -> int:
    """How many messages the model was given at the turn's first call."""
    return int(event_data(api, run_id, "model_request")[0]["messages"])


def test_each_turn_sees_the_succeeded_turns_before_it(api: httpx.Client) -> None:
    api.post("/v1/apply", json=[scripted_model("m", {"text": "one"}), agent("pal", "m")])
    session = api.post("/v1/sessions", json={"agent": "pal", "metadata": {"user": "ada"}}).json()
    assert session["object"] == "session" and session["metadata"] == {"user": "ada"}

    first = turn(api, session["id"], "hello")
    assert first["status"] == "succeeded" and first["session_id"] == session["id"]
    assert seen_by_model(api, first["id"]) == 1

    api.post("/v1/apply", json=[scripted_model("m", {"error": "the provider is down"})])
    failed = turn(api, session["id"], "are you there?")
    assert failed["status"] == "failed"

    api.post("/v1/apply", json=[scripted_model("m", {"text": "three"})])
    # The same through the agent's runs endpoint, naming the session.
    third = api.post("/v1/agents/pal/runs", json={"input": "again", "session": session["id"]})
    assert third.json()["status"] == "succeeded"
    assert seen_by_model(api, third.json()["id"]) == 3  # hello, one, again: not the failed turn

    shown = api.get(f"/v1/sessions/{session['id']}").json()
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [
        ("user", "hello"),
        ("assistant", "one"),
        ("user", "again"),
        ("assistant", "three"),
    ]
    assert [r["status"] for r in shown["runs"]] == ["succeeded", "failed", "succeeded"]
    assert (
        api.get("/v1/sessions", params={"agent": "pal"}).json()["items"][0]["id"] == session["id"]
    )


def test_a_session_refuses_a_second_active_turn_and_another_agent(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("slow", {"text": "done", "delaySeconds": 30}),
            agent("pal", "slow"),
            agent("other", "slow"),
        ],
    )
    session = api.post("/v1/sessions", json={"agent": "pal"}).json()["id"]
    running = turn(api, session, "take your time", wait=False)

    busy = api.post(f"/v1/sessions/{session}/runs", json={"input": "and this?"})
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "session_busy"
    assert running["id"] in busy.json()["error"]["message"]
    refused = api.delete(f"/v1/sessions/{session}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "session_busy"

    wrong = api.post("/v1/agents/other/runs", json={"input": "hi", "session": session})
    assert wrong.status_code == 422
    assert "belongs to agent 'pal'" in wrong.json()["error"]["message"]
    missing = api.post("/v1/sessions/ses_nope/runs", json={"input": "hi"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    unknown_agent = api.post("/v1/sessions", json={"agent": "nobody"})
    assert unknown_agent.status_code == 404

    api.post(f"/v1/runs/{running['id']}/cancel").raise_for_status()


def test_deleting_a_session_deletes_its_runs_and_their_events(api: httpx.Client) -> None:
    api.post("/v1/apply", json=[scripted_model("m", {"text": "one"}), agent("pal", "m")])
    session = api.post("/v1/sessions", json={"agent": "pal"}).json()["id"]
    kept = api.post("/v1/agents/pal/runs", json={"input": "not in the session"}).json()
    runs = [turn(api, session, f"turn {i}")["id"] for i in range(2)]

    assert api.delete(f"/v1/sessions/{session}").json()["deleted"] is True
    assert api.get(f"/v1/sessions/{session}").status_code == 404
    for run_id in runs:
        assert api.get(f"/v1/runs/{run_id}").status_code == 404
        assert api.get(f"/v1/runs/{run_id}/events").status_code == 404
    assert api.get(f"/v1/runs/{kept['id']}").json()["status"] == "succeeded"
    assert api.delete(f"/v1/sessions/{session}").status_code == 404


async def test_two_turns_started_at_once_cannot_both_start(store: SqlStore) -> None:
    """On SQLite and on PostgreSQL: of turns started at the same moment, one wins."""
    session = SessionRecord(new_id("ses"), "default", "pal", now(), now())
    await store.create_session(session)

    def queued() -> RunRecord:
        return queued_run(agent="pal", session_id=session.id)

    results = await asyncio.gather(
        *(store.create_run(queued()) for _ in range(8)), return_exceptions=True
    )
    started = [r for r in results if isinstance(r, RunRecord)]
    assert len(started) == 1
    assert all(isinstance(r, SessionBusyError) for r in results if r not in started)
    assert [r.id for r in await store.session_runs("default", session.id)] == [started[0].id]

    orphan = queued()
    with pytest.raises(SessionNotFoundError):
        await store.create_run(RunRecord(**{**orphan.__dict__, "session_id": "ses_gone"}))

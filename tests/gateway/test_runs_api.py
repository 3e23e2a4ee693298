"""Runs over REST and SSE: wait, 202 and poll, stream, events, cancel, limits."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.helpers import ServerThread, agent, scripted_model, wait_until

CLOCK = [
    scripted_model(
        "clock-model",
        {"toolCalls": [{"name": "current_time", "arguments": {"timezone": "UTC"}}]},
        {"text": "It is now."},
    ),
    agent("clock", "clock-model", tools=[{"builtin": "current_time"}]),
]


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    events, data = [], []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            events.append(json.loads("\n".join(data)))
            data = []
    return events


def test_a_run_waits_and_returns_its_answer_usage_and_generation(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    run = api.post("/v1/agents/clock/runs", json={"input": "What time is it?"}).json()
    assert run["status"] == "succeeded" and run["reason"] == "completed"
    assert run["output"]["text"] == "It is now."
    assert run["agent_generation"] == 1
    assert run["usage"]["input_tokens"] > 0 and run["usage"]["output_tokens"] > 0

    events = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
    types = [e["type"] for e in events]
    assert types == [
        "run_started",
        "model_request",
        "model_response",
        "tool_call",
        "tool_result",
        "model_request",
        "model_response",
        "final",
        "run_finished",
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[4]["data"]["content"].startswith("20")  # an ISO timestamp


def test_a_run_records_the_generation_it_used(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    api.post(
        "/v1/apply",
        json=agent("clock", "clock-model", tools=[{"builtin": "current_time"}], instructions="new"),
    )
    run = api.post("/v1/agents/clock/runs", json={"input": "time?"}).json()
    assert run["agent_generation"] == 2


def test_no_wait_answers_202_and_the_run_can_be_polled(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    response = api.post("/v1/agents/clock/runs", json={"input": "time?", "wait": False})
    assert response.status_code == 202
    location = response.headers["location"]
    done = wait_until(lambda: (r := api.get(location).json())["status"] == "succeeded" and r)
    assert done["output"]["text"] == "It is now."


def test_stream_sends_every_event_then_ends(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    with api.stream(
        "POST", "/v1/agents/clock/runs", json={"input": "t", "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    stored = [e for e in events if e["seq"]]
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    assert stored[-1]["type"] == "run_finished" and stored[-1]["data"]["status"] == "succeeded"
    deltas = "".join(e["data"]["text"] for e in events if e["type"] == "delta")
    assert deltas == "It is now."


def test_following_a_finished_run_replays_it_and_last_event_id_resumes(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    run = api.post("/v1/agents/clock/runs", json={"input": "t"}).json()
    with api.stream("GET", f"/v1/runs/{run['id']}/events?follow=true") as response:
        everything = sse_events(response)
    with api.stream(
        "GET",
        f"/v1/runs/{run['id']}/events",
        headers={"accept": "text/event-stream", "last-event-id": "5"},
    ) as response:
        rest = sse_events(response)
    assert [e["seq"] for e in rest] == [e["seq"] for e in everything if e["seq"] > 5]


def test_cancel_stops_a_running_run(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[scripted_model("slow", {"text": "late", "delaySeconds": 30}), agent("slow", "slow")],
    )
    run = api.post("/v1/agents/slow/runs", json={"input": "x", "wait": False}).json()
    wait_until(lambda: api.get(f"/v1/runs/{run['id']}").json()["status"] == "running")
    cancelled = api.post(f"/v1/runs/{run['id']}/cancel").json()
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "cancelled")
    types = [e["type"] for e in api.get(f"/v1/runs/{run['id']}/events").json()["items"]]
    assert types[-1] == "run_finished" and "final" not in types
    # Cancelling again is harmless; a finished run cannot be cancelled.
    assert api.post(f"/v1/runs/{run['id']}/cancel").json()["status"] == "cancelled"


def test_cancelling_a_finished_run_is_a_conflict(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    run = api.post("/v1/agents/clock/runs", json={"input": "t"}).json()
    response = api.post(f"/v1/runs/{run['id']}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "run_not_active"


def test_wall_time_limit_fails_the_run_with_timeout(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("slow", {"text": "late", "delaySeconds": 30}),
            agent("hasty", "slow", limits={"timeoutSeconds": 0.3}),
        ],
    )
    run = api.post("/v1/agents/hasty/runs", json={"input": "x"}).json()
    assert (run["status"], run["reason"]) == ("failed", "timeout")


def test_step_limit_fails_the_run_with_max_steps(api: httpx.Client) -> None:
    loop = scripted_model("loop", {"toolCalls": [{"name": "current_time"}]})
    api.post(
        "/v1/apply",
        json=[
            loop,
            agent("loop", "loop", tools=[{"builtin": "current_time"}], limits={"maxSteps": 2}),
        ],
    )
    run = api.post("/v1/agents/loop/runs", json={"input": "x"}).json()
    assert (run["status"], run["reason"]) == ("failed", "max_steps")


def test_a_model_error_fails_the_run_with_its_message(api: httpx.Client) -> None:
    api.post(
        "/v1/apply", json=[scripted_model("down", {"error": "upstream 503"}), agent("down", "down")]
    )
    run = api.post("/v1/agents/down/runs", json={"input": "x"}).json()
    assert (run["status"], run["reason"]) == ("failed", "model_error")
    assert "upstream 503" in run["error"]["message"]


def test_an_agent_on_a_missing_model_fails_with_a_hint(api: httpx.Client) -> None:
    api.post("/v1/apply", json=agent("orphan", "ghost"))
    run = api.post("/v1/agents/orphan/runs", json={"input": "x"}).json()
    assert (run["status"], run["reason"]) == ("failed", "configuration_error")
    assert "ghost" in run["error"]["message"] and run["error"]["hint"]


def test_bad_run_requests_are_422(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    for body in (
        {},
        {"input": "a", "messages": []},
        {"messages": [{"role": "robot"}]},
        {"input": "a", "extra": 1},
    ):
        response = api.post("/v1/agents/clock/runs", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_request"
    assert (
        api.post(
            "/v1/agents/clock/runs", content="{", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )


def test_runs_list_is_scoped_and_filterable(server: ServerThread, api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[*CLOCK, agent("other", "clock-model", tools=[{"builtin": "current_time"}])],
    )
    api.post("/v1/agents/clock/runs", json={"input": "t"})
    api.post("/v1/agents/other/runs", json={"input": "t"})
    assert len(api.get("/v1/runs").json()["items"]) == 2
    assert [r["agent"] for r in api.get("/v1/runs?agent=other").json()["items"]] == ["other"]


def test_a_run_priority_is_recorded_and_checked(api: httpx.Client) -> None:
    api.post("/v1/apply", json=CLOCK)
    run = api.post("/v1/agents/clock/runs", json={"input": "x", "priority": 7}).json()
    assert run["priority"] == 7
    refused = api.post("/v1/agents/clock/runs", json={"input": "x", "priority": 1000})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"

"""Approvals: a tool call the policy holds parks the run durably until a person
approves or denies it, over REST or ``hangar approve``; the run then goes on from
its events, on whichever worker picks it up, without repeating a step."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from typer.testing import CliRunner

from hangar.cli.main import app
from tests.helpers import ServerThread, agent, event_data, events, scripted_model

HOLD_TIME = {"rules": [{"tool": "current_*", "action": "require_approval"}]}


def call(*names: str) -> dict[str, Any]:
    return {"toolCalls": [{"name": name, "arguments": {}} for name in names]}


def start_held_run(api: httpx.Client, *script: dict[str, Any]) -> dict[str, Any]:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("script", *script),
            agent("clock", "script", tools=[{"builtin": "current_time"}], toolPolicy=HOLD_TIME),
        ],
    )
    run = api.post("/v1/agents/clock/runs", json={"input": "what time is it?"}).json()
    assert run["status"] == "waiting_approval", run
    return dict(run)


def test_an_approval_survives_a_server_restart_and_the_run_goes_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = ServerThread(home).start()
    try:
        with first.client() as api:
            run = start_held_run(api, call("current_time"), {"text": "It is now."})
            requested = event_data(api, run["id"], "approval_requested")
            assert len(requested) == 1
            held = requested[0]["calls"]
            assert [(c["name"], c["rule"]) for c in held] == [
                ("current_time", "toolPolicy.rules[0] ('current_*': require_approval)")
            ]
            assert event_data(api, run["id"], "tool_result") == []  # nothing ran yet
            assert api.get(f"/v1/runs/{run['id']}/approvals").json()["items"] == held
    finally:
        first.stop()

    second = ServerThread(home).start()  # a new process over the same store
    try:
        cli = CliRunner().invoke(
            app, ["--url", second.url, "--api-key", second.admin_key, "approve", run["id"]]
        )
        assert cli.exit_code == 0, cli.output
        assert "approve current_time" in cli.output
        with second.client() as api:
            done = _settled(api, run["id"])
            assert (done["status"], done["output"]["text"]) == ("succeeded", "It is now."), done
            results = event_data(api, run["id"], "tool_result")
            assert len(results) == 1 and not results[0]["is_error"]
            assert results[0]["content"][:2] == "20"  # an ISO date: the tool really ran
            decided = event_data(api, run["id"], "approval_decided")
            assert [(d["decision"], d["by"][:9]) for d in decided] == [("approve", "key admin")]
            # One model call per step: the resumed run repeated nothing.
            steps = [r["step"] for r in event_data(api, run["id"], "model_response")]
            assert steps == [1, 2]
            audit = api.get("/v1/audit/tool-calls", params={"run": run["id"]}).json()["items"]
            assert [a["outcome"] for a in audit] == ["ok"]
    finally:
        second.stop()


def test_a_denial_with_a_comment_reaches_the_model_and_the_run_goes_on(
    api: httpx.Client,
) -> None:
    run = start_held_run(api, call("current_time"), {"text": "I could not check the time."})
    decided = api.post(f"/v1/runs/{run['id']}/deny", json={"comment": "not during the audit"})
    assert decided.status_code == 200, decided.text
    done = api.post(
        "/v1/agents/clock/runs", json={"input": "x", "wait": False}
    )  # another run meanwhile: the queue keeps working
    assert done.status_code == 202
    final = _settled(api, run["id"])
    assert final["status"] == "succeeded", final
    result = event_data(api, run["id"], "tool_result")[0]
    assert result["is_error"]
    assert "denied this call: not during the audit" in result["content"]
    audit = api.get("/v1/audit/tool-calls", params={"run": run["id"]}).json()["items"]
    assert [a["outcome"] for a in audit] == ["approval_denied"]


def test_in_a_step_with_held_and_free_calls_the_free_ones_run_at_once(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("two", call("http_get", "current_time"), {"text": "both done"}),
            agent(
                "mixed",
                "two",
                tools=[{"builtin": "current_time"}, {"builtin": "http_get"}],
                toolPolicy=HOLD_TIME,
            ),
        ],
    )
    run = api.post("/v1/agents/mixed/runs", json={"input": "go"}).json()
    assert run["status"] == "waiting_approval"
    early = event_data(api, run["id"], "tool_result")
    assert [r["name"] for r in early] == ["http_get"]  # ran (and failed: no URL) at once
    held = api.get(f"/v1/runs/{run['id']}/approvals").json()["items"]
    wrong = api.post(f"/v1/runs/{run['id']}/approve", json={"callId": "nope"})
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"]["pending"] == [held[0]["id"]]
    api.post(f"/v1/runs/{run['id']}/approve", json={"callId": held[0]["id"]})
    final = _settled(api, run["id"])
    assert final["status"] == "succeeded", final
    per_call = Counter(r["id"] for r in event_data(api, run["id"], "tool_result"))
    assert sorted(per_call.values()) == [1, 1]  # each call has exactly one result
    again = api.post(f"/v1/runs/{run['id']}/approve")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "run_not_active")


def test_a_waiting_run_can_be_cancelled_and_the_openai_api_says_it_waits(
    server: ServerThread, api: httpx.Client
) -> None:
    start_held_run(api, call("current_time"), {"text": "never"})
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.admin_key)
    with pytest.raises(openai.ConflictError) as waiting:
        client.chat.completions.create(
            model="clock", messages=[{"role": "user", "content": "time?"}]
        )
    body: Any = waiting.value.body
    assert body["code"] == "run_waiting_approval"
    run_id = body["details"]["run"]
    cancelled = api.post(f"/v1/runs/{run_id}/cancel").json()
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "cancelled")
    assert events(api, run_id)[-1]["type"] == "run_finished"
    assert api.get(f"/v1/runs/{run_id}/approvals").json()["items"] != []  # undecided, moot
    refused = api.post(f"/v1/runs/{run_id}/approve")
    assert refused.status_code == 409


def _settled(api: httpx.Client, run_id: str) -> dict[str, Any]:
    for _ in range(600):
        run = api.get(f"/v1/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not settle")

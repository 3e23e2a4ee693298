"""Agents as tools: a parent calls a child agent like a tool; the child's run is
linked to the parent's, its tokens and cost roll up, and nesting has a limit."""

from __future__ import annotations

import json
from typing import Any

import httpx
from typer.testing import CliRunner

from hangar.cli.main import app
from tests.helpers import ServerThread, agent, event_data, scripted_model, wait_until

PRICES = {"inputPerMillion": 1_000_000, "outputPerMillion": 2_000_000}  # $1 / $2 a token


def ask(name: str, text: str, **tokens: int) -> dict[str, Any]:
    return {"toolCalls": [{"name": name, "arguments": {"input": text}}], **tokens}


def say(text: str, **tokens: int) -> dict[str, Any]:
    return {"text": text, **tokens}


def test_a_child_agent_answers_its_parent_and_its_spend_rolls_up(
    server: ServerThread, api: httpx.Client
) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model(
                "boss-model",
                ask("researcher", "find the capital", inputTokens=10, outputTokens=5),
                say("The capital is Paris.", inputTokens=20, outputTokens=7),
                pricing=PRICES,
            ),
            scripted_model(
                "researcher-model", say("Paris", inputTokens=3, outputTokens=2), pricing=PRICES
            ),
            agent("researcher", "researcher-model", description="Looks things up."),
            agent("boss", "boss-model", tools=[{"agent": "researcher"}]),
        ],
    ).raise_for_status()
    run = api.post("/v1/agents/boss/runs", json={"input": "capital of France?"}).json()
    assert (run["status"], run["output"]["text"]) == ("succeeded", "The capital is Paris.")
    offered = event_data(api, run["id"], "model_request")[0]["tools"]
    assert offered == ["researcher"]
    result = event_data(api, run["id"], "tool_result")[0]
    assert (result["name"], result["content"], result["is_error"]) == ("researcher", "Paris", False)
    child = api.get(f"/v1/runs/{result['child_run']}").json()
    assert (child["agent"], child["parent_id"], child["depth"]) == ("researcher", run["id"], 1)
    assert child["input"]["messages"] == [{"role": "user", "content": "find the capital"}]
    assert child["usage"]["total_tokens"] == 5 and child["usage"]["cost"] == 7
    # The parent's usage holds its own two calls and its child's.
    assert run["usage"]["input_tokens"] == 10 + 20 + 3
    assert run["usage"]["output_tokens"] == 5 + 7 + 2
    assert run["usage"]["cost"] == (10 + 20 + 3) * 1 + (5 + 7 + 2) * 2
    # The decision path nests the child's run under the tool call that started it.
    cli = ["--url", server.url, "--api-key", server.admin_key, "runs", "show", run["id"]]
    shown = CliRunner().invoke(app, cli, env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    tool_line = next(i for i, line in enumerate(lines) if "tool researcher" in line)
    assert child["id"] in lines[tool_line + 1] and "researcher@1" in lines[tool_line + 1]
    exported = json.loads(CliRunner().invoke(app, [*cli, "--json"]).output)
    assert exported["children"][child["id"]]["run"]["parent_id"] == run["id"]


def test_nesting_stops_at_the_depth_limit_with_the_limit_named(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("m", ask("echo", "deeper"), say("back up")),
            agent("echo", "m", tools=[{"agent": "echo"}], limits={"maxDepth": 2}),
        ],
    ).raise_for_status()
    root = api.post("/v1/agents/echo/runs", json={"input": "go"}).json()
    assert root["status"] == "succeeded", root
    chain = [root]
    while True:
        results = event_data(api, chain[-1]["id"], "tool_result")
        if "child_run" not in results[0]:
            break
        chain.append(api.get(f"/v1/runs/{results[0]['child_run']}").json())
    assert [r["depth"] for r in chain] == [0, 1, 2]
    refused = event_data(api, chain[-1]["id"], "tool_result")[0]
    assert refused["is_error"]
    assert "agents may nest 2 deep below agent 'echo'" in refused["content"]
    assert all(r["status"] == "succeeded" for r in chain)


def test_cancelling_the_parent_cancels_the_child_it_waits_for(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("boss-model", ask("slow", "take your time"), say("never")),
            scripted_model("slow-model", {"text": "late", "delaySeconds": 30}),
            agent("slow", "slow-model"),
            agent("boss", "boss-model", tools=[{"agent": "slow"}]),
        ],
    ).raise_for_status()
    run = api.post("/v1/agents/boss/runs", json={"input": "x", "wait": False}).json()
    child = wait_until(
        lambda: next(
            (r for r in api.get("/v1/runs").json()["items"] if r["parent_id"] == run["id"]), None
        ),
        what="the child run",
    )
    cancelled = api.post(f"/v1/runs/{run['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    child = api.get(f"/v1/runs/{child['id']}").json()
    assert child["status"] == "cancelled"

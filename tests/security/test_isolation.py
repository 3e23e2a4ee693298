"""A tenant reaches for what is not its own: another namespace's traces, a role it was
not given, a replayed webhook, a tool its namespace's policy forbids, unbounded
metrics, the server's state files. Each is refused (or scoped), and the victim's
data is unchanged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
import time
import uuid

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import agent, doc, scripted_model, tool_step, wait_until
from tests.security.conftest import World, refused


def traceparent(trace: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace}-{uuid.uuid4().hex[:16]}-01"}


def trace_spans(client: httpx2.Client | object, run_id: str) -> list[dict[str, object]]:
    return list(client.get(f"/v1/runs/{run_id}/trace").json()["spans"])  # type: ignore[attr-defined]


def test_another_namespaces_trace_id_continues_only_your_own(world: World) -> None:
    trace = uuid.uuid4().hex
    with world.victim() as victim, world.tenant() as tenant:
        theirs = victim.post(
            "/v1/agents/private/runs",
            json={"input": "hi", "user": "alice"},
            headers=traceparent(trace),
        ).json()
        tenant.post(
            "/v1/apply", json=[scripted_model("m", {"text": "mine"}), agent("mine", "m")]
        ).raise_for_status()
        mine = tenant.post(
            "/v1/agents/mine/runs",
            json={"input": "hi", "user": "alice"},
            headers=traceparent(trace),
        ).json()
        assert theirs["trace_id"] == mine["trace_id"] == trace
        victims = wait_until(lambda: len(s := trace_spans(victim, theirs["id"])) >= 3 and s)
        tenants = wait_until(lambda: len(s := trace_spans(tenant, mine["id"])) >= 3 and s)
        assert {s["attributes"]["hangar.namespace"] for s in victims} == {"victim"}  # type: ignore[index]
        assert {s["attributes"]["hangar.namespace"] for s in tenants} == {"tenant"}  # type: ignore[index]
        assert not {s["spanId"] for s in victims} & {s["spanId"] for s in tenants}
        # Forgetting the tenant's user takes the tenant's spans only.
        tenant.delete("/v1/users/alice").raise_for_status()
        assert trace_spans(victim, theirs["id"]) == victims
        assert victim.get(f"/v1/runs/{theirs['id']}").status_code == 200


@pytest.mark.parametrize(
    ("role", "allowed", "refused_calls"),
    [
        ("viewer", [("GET", "/v1/runs"), ("GET", "/v1/resources/agents")],
         [("POST", "/v1/apply"), ("POST", "/v1/agents/mine/runs"), ("GET", "/v1/approvals")]),
        ("runner", [("POST", "/v1/agents/mine/runs"), ("GET", "/v1/runs")],
         [("POST", "/v1/apply"), ("GET", "/v1/resources/agents"), ("GET", "/v1/usage")]),
        ("approver", [("GET", "/v1/approvals")],
         [("GET", "/v1/runs"), ("POST", "/v1/agents/mine/runs"), ("POST", "/v1/keys")]),
        ("developer", [("POST", "/v1/apply"), ("GET", "/v1/runs")],
         [("POST", "/v1/keys"), ("GET", "/v1/approvals")]),
    ],
)  # fmt: skip
def test_each_role_may_do_its_part_and_no_more(
    world: World,
    role: str,
    allowed: list[tuple[str, str]],
    refused_calls: list[tuple[str, str]],
) -> None:
    with world.tenant() as tenant:
        tenant.post(
            "/v1/apply", json=[scripted_model("m", {"text": "mine"}), agent("mine", "m")]
        ).raise_for_status()
        key = tenant.post("/v1/keys", json={"role": role, "name": role}).json()["key"]
    bodies = {
        "/v1/apply": [scripted_model("m2", {"text": "x"})],
        "/v1/agents/mine/runs": {"input": "hi"},
    }
    with world.client(key) as client:
        for method, path in allowed:
            response = client.request(method, path, json=bodies.get(path))
            assert response.status_code < 300, (role, path, response.text)
        for method, path in refused_calls:
            error = refused(
                client.request(method, path, json=bodies.get(path) or {"role": "viewer"}),
                403,
                "permission_denied",
            )
            assert f"a {role} key may not" in error["message"]


def test_a_runner_sees_only_its_own_runs(world: World) -> None:
    with world.tenant() as tenant:
        tenant.post(
            "/v1/apply", json=[scripted_model("m", {"text": "mine"}), agent("mine", "m")]
        ).raise_for_status()
        others = tenant.post("/v1/agents/mine/runs", json={"input": "not yours"}).json()
        runner = tenant.post("/v1/keys", json={"role": "runner"}).json()["key"]
    with world.client(runner) as client:
        own = client.post("/v1/agents/mine/runs", json={"input": "mine"}).json()
        assert [r["id"] for r in client.get("/v1/runs").json()["items"]] == [own["id"]]
        refused(client.get(f"/v1/runs/{others['id']}"), 404, "run_not_found")
        refused(client.get(f"/v1/runs/{others['id']}/events"), 404, "run_not_found")
        refused(client.post(f"/v1/runs/{others['id']}/cancel"), 404, "run_not_found")
        assert client.get(f"/v1/runs/{own['id']}/events").status_code == 200


def test_a_namespace_admin_makes_no_admin_and_revoked_keys_stop_within_a_second(
    world: World,
) -> None:
    with world.tenant() as tenant:
        error = refused(tenant.post("/v1/keys", json={"role": "admin"}), 403, "permission_denied")
        assert "role 'admin'" in error["message"]
        refused(
            tenant.post("/v1/keys", json={"namespace": "victim", "role": "viewer"}),
            403,
            "permission_denied",
        )
        refused(tenant.get("/v1/keys", params={"all": "true"}), 403, "permission_denied")
        refused(
            tenant.get("/v1/runs", headers={"X-Hangar-Namespace": "victim"}),
            403,
            "namespace_mismatch",
        )
        made = tenant.post("/v1/keys", json={"role": "viewer", "name": "short"}).json()
        with world.client(made["key"]) as viewer:
            assert viewer.get("/v1/whoami").json()["role"] == "viewer"
            listed = {k["id"]: k for k in tenant.get("/v1/keys").json()["items"]}
            assert made["id"] in listed and "key" not in listed[made["id"]]

            def stamped() -> object:  # the use is recorded behind the request, not in it
                keys = {k["id"]: k for k in tenant.get("/v1/keys").json()["items"]}
                return keys[made["id"]]["last_used_at"]

            wait_until(stamped, what="the key's last use to be recorded")
            tenant.delete(f"/v1/keys/{made['id']}").raise_for_status()
            time.sleep(1.1)  # the longest any process keeps a key it has checked
            error = refused(viewer.get("/v1/whoami"), 401, "unauthenticated")
            assert "revoked" in error["message"]
        expiring = tenant.post("/v1/keys", json={"role": "viewer", "expiresIn": 1}).json()
        time.sleep(2.2)
        with world.client(expiring["key"]) as late:
            assert "expired" in refused(late.get("/v1/whoami"), 401, "unauthenticated")["message"]


def standard(secret: str, delivery: str, body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    signed = f"{delivery}.{stamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "webhook-id": delivery,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def test_a_replayed_webhook_starts_one_run_and_every_refusal_is_alike(
    world: World,
) -> None:
    with world.tenant() as tenant:
        tenant.post(
            "/v1/apply",
            json=[
                doc("Secret", "hook", {"data": {"key": "hook-secret-9f"}}),
                scripted_model("m", {"text": "done"}),
                agent("hooked", "m"),
                doc(
                    "Trigger",
                    "push",
                    {"agent": "hooked", "webhook": {"secret": {"secret": "hook", "key": "key"}}},
                ),
            ],
        ).raise_for_status()
        before = len(tenant.get("/v1/runs", params={"agent": "hooked"}).json()["items"])
        url = f"{world.url}/v1/namespaces/tenant/triggers/push"
        body = b'{"ref": "main"}'
        headers = standard("hook-secret-9f", "delivery-1", body)
        answers = [httpx2.post(url, content=body, headers=headers) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202]
        assert len({a.json()["run"] for a in answers}) == 1
        after = len(tenant.get("/v1/runs", params={"agent": "hooked"}).json()["items"])
        assert after == before + 1
    refusals = [
        httpx2.post(f"{world.url}/v1/namespaces/tenant/triggers/push", content=body),
        httpx2.post(
            f"{world.url}/v1/namespaces/tenant/triggers/missing", content=body, headers=headers
        ),
        httpx2.post(
            f"{world.url}/v1/namespaces/victim/triggers/push", content=body, headers=headers
        ),
    ]
    assert {(r.status_code, r.text) for r in refusals} == {
        (refusals[0].status_code, refusals[0].text)
    }
    assert refusals[0].status_code == 401


async def test_the_mcp_endpoint_applies_the_namespaces_tool_policy(world: World) -> None:
    with world.tenant() as tenant:
        tenant.post(
            "/v1/apply",
            json=[
                scripted_model("m", {"text": "hello"}),
                agent("greeter", "m"),
                agent("shredder", "m"),
                doc("ToolPolicy", "guard", {"rules": [{"tool": "shredder", "action": "deny"}]}),
            ],
        ).raise_for_status()
        viewer = tenant.post("/v1/keys", json={"role": "viewer"}).json()["key"]

    def client(key: str) -> Client:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
        return Client(streamable_http_client(f"{world.url}/v1/mcp", http_client=http))

    async with client(world.tenant_key) as mcp:
        names = {t.name for t in (await mcp.list_tools()).tools}
        assert "greeter" in names and "shredder" not in names
        denied = await mcp.call_tool("shredder", {"input": "everything"})
        assert denied.is_error and "ToolPolicy 'guard'" in denied.content[0].text  # type: ignore[union-attr]
    with pytest.raises(Exception, match="TaskGroup"):
        async with client(viewer) as mcp:  # may not start runs: no MCP at all
            await mcp.list_tools()
    with world.tenant() as tenant:
        audit = tenant.get("/v1/audit/tool-calls").json()["items"]
        assert ("shredder", "denied") in {(a["tool"], a["outcome"]) for a in audit}


def test_a_made_up_tool_name_does_not_make_a_metric_series(world: World) -> None:
    invented = f"tool_{uuid.uuid4().hex}"
    with world.tenant() as tenant:
        tenant.post(
            "/v1/apply",
            json=[
                scripted_model("inventor", tool_step(invented), {"text": "ok"}),
                agent("inventor", "inventor", tools=[{"builtin": "current_time"}]),
            ],
        ).raise_for_status()
        run = tenant.post("/v1/agents/inventor/runs", json={"input": "go"}).json()
        assert run["status"] == "succeeded", run
    metrics = httpx2.get(f"{world.url}/metrics").text
    assert invented not in metrics
    assert 'tool="unknown"' in metrics


def test_cursors_and_limits_are_bounded(world: World) -> None:
    with world.tenant() as tenant:
        tenant.post(
            "/v1/apply", json=[scripted_model("m", {"text": "mine"}), agent("mine", "m")]
        ).raise_for_status()
        run = tenant.post("/v1/agents/mine/runs", json={"input": "hi"}).json()
        for query in ({"after": "99999999999999999999"}, {"after": "-1"}):
            refused(
                tenant.get(f"/v1/runs/{run['id']}/events", params=query), 422, "invalid_request"
            )
        refused(tenant.get("/v1/runs", params={"limit": "100000"}), 422, "invalid_request")


def test_the_state_files_are_the_servers_alone(world: World) -> None:
    home = world.up.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    made = [p for p in home.iterdir() if p.is_file() and p.name != "admission.yaml"]
    assert {"hangar.db", "admin.key", "secret.key", "client.json"} <= {p.name for p in made}
    for path in made:  # the administrator's own admission file is theirs to set
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_the_victims_data_is_unchanged(world: World) -> None:
    """After everything the tenant tried, the victim's namespace is as it made it."""
    with world.victim() as victim:
        kinds = {
            kind: sorted(
                item["metadata"]["name"]
                for item in victim.get(f"/v1/resources/{kind}").json()["items"]
            )
            for kind in ("agents", "models", "secrets", "mcpservers", "knowledgebases")
        }
        assert kinds == {
            "agents": ["private"],
            "models": ["m"],
            "secrets": ["vault"],
            "mcpservers": [],
            "knowledgebases": [],
        }
        secret = victim.get("/v1/resources/secrets/vault").json()
        assert json.dumps(secret).count("victim-token") == 0

"""The gateway's front gate: a key's rate, an admin key's choice of namespace, the keys'
own lifecycle from the CLI, and the pages that take optional auth."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from hangar.cli.main import app
from tests.helpers import ServerThread, agent, scripted_model


def test_a_key_past_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    server = ServerThread(tmp_path / "home", rate_limit_per_second=2, rate_limit_burst=5).start()
    try:
        with server.client() as admin:
            other = admin.post("/v1/keys", json={"namespace": "b", "role": "viewer"}).json()
            answers = [admin.get("/v1/whoami") for _ in range(12)]
        statuses = [a.status_code for a in answers]
        assert statuses[:4] == [200] * 4 and 429 in statuses  # a burst of 5, the first spent
        limited = next(a for a in answers if a.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1
        error = limited.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["retry_after"] >= 1
        with server.client(other["key"]) as neighbour:  # another key: a bucket of its own
            assert neighbour.get("/v1/whoami").status_code == 200
    finally:
        server.stop()


def test_an_admin_key_acts_in_any_namespace_it_names(
    server: ServerThread, api: httpx.Client
) -> None:
    team = {"X-Hangar-Namespace": "team-a"}
    api.post(
        "/v1/apply", json=[scripted_model("m", {"text": "hi"}), agent("a", "m")], headers=team
    ).raise_for_status()
    assert api.get("/v1/whoami", headers=team).json()["namespace"] == "team-a"
    assert [
        a["metadata"]["name"] for a in api.get("/v1/resources/agents", headers=team).json()["items"]
    ] == ["a"]
    assert api.get("/v1/resources/agents").json()["items"] == []  # its own namespace: default
    bad = api.get("/v1/whoami", headers={"X-Hangar-Namespace": "Not A Name"})
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "namespace_mismatch"


def test_keys_are_made_listed_and_revoked_from_the_cli(server: ServerThread) -> None:
    base = ["--url", server.url, "--api-key", server.admin_key]
    made = CliRunner().invoke(
        app,
        [*base, "keys", "create", "--namespace", "team-a", "--role", "runner", "--expires", "30d"],
    )
    assert made.exit_code == 0, made.output
    secret = made.output.split()[0]
    assert secret.startswith("hgr_") and "(runner) for namespace team-a, until" in made.output
    listed = CliRunner().invoke(app, [*base, "keys", "list", "--all", "-o", "json"])
    key_id = next(
        k["id"] for k in __import__("json").loads(listed.output) if k["namespace"] == "team-a"
    )
    me = CliRunner().invoke(app, ["--url", server.url, "--api-key", secret, "whoami"])
    assert "role runner: may run" in me.output
    revoked = CliRunner().invoke(app, [*base, "keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked at" in revoked.output
    refused = httpx.get(f"{server.url}/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


def test_metrics_and_docs_take_a_key_when_the_administrator_asks(tmp_path: Path) -> None:
    server = ServerThread(tmp_path / "home", metrics_auth=True, docs_auth=True).start()
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        assert httpx.get(f"{server.url}/openapi.json").status_code == 401
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        with server.client() as admin:
            assert admin.get("/metrics").status_code == 200
            viewer = admin.post("/v1/keys", json={"role": "viewer"}).json()["key"]
        with server.client(viewer) as client:
            assert client.get("/openapi.json").status_code == 200
            metrics = client.get("/metrics")  # every namespace's figures: admins only
            assert metrics.status_code == 403
    finally:
        server.stop()

"""Resources over REST: apply, get, list, versions, delete; each client mistake gets
its documented error code and changes nothing stored."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers import ServerThread, agent, doc, scripted_model


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return dict(body["error"])


def snapshot(api: httpx.Client) -> list[Any]:
    return [api.get(f"/v1/resources/{kind}").json()["items"] for kind in ("agents", "models")]


def test_apply_creates_then_is_idempotent_then_versions(api: httpx.Client) -> None:
    docs = [scripted_model("m", {"text": "hi"}), agent("a", "m", instructions="v1")]
    first = api.post("/v1/apply", json={"documents": docs}).json()["results"]
    assert [(r["kind"], r["outcome"], r["generation"]) for r in first] == [
        ("Model", "created", 1),
        ("Agent", "created", 1),
    ]
    again = api.post("/v1/apply", json=docs).json()["results"]
    assert [r["outcome"] for r in again] == ["unchanged", "unchanged"]

    changed = api.post("/v1/apply", json=agent("a", "m", instructions="v2")).json()["results"]
    assert (changed[0]["outcome"], changed[0]["generation"]) == ("configured", 2)
    versions = api.get("/v1/resources/agents/a/versions").json()["versions"]
    assert [(v["generation"], v["spec"]["instructions"]) for v in versions] == [
        (1, "v1"),
        (2, "v2"),
    ]

    got = api.get("/v1/resources/agent/a").json()
    assert got["metadata"]["generation"] == 2 and got["metadata"]["namespace"] == "default"
    # What we read back applies again unchanged.
    assert api.post("/v1/apply", json=got).json()["results"][0]["outcome"] == "unchanged"


def test_apply_accepts_yaml_bodies(api: httpx.Client) -> None:
    text = "apiVersion: hangar.dev/v1alpha1\nkind: Agent\nmetadata: {name: y}\nspec: {}\n"
    response = api.post("/v1/apply", content=text, headers={"content-type": "application/yaml"})
    assert response.json()["results"][0]["name"] == "y"


def test_apply_warns_about_a_missing_model(api: httpx.Client) -> None:
    result = api.post("/v1/apply", json=agent("a", "ghost")).json()["results"][0]
    assert result["warnings"] == ["Agent 'a' uses model 'ghost', which does not exist yet"]


@pytest.mark.parametrize(
    ("body", "headers", "code", "needle"),
    [
        ("kind: [", {"content-type": "application/yaml"}, "invalid_yaml", "line"),
        (
            json.dumps(doc("Widget", "w", {})),
            {},
            "unknown_kind",
            "Widget",
        ),
        (
            json.dumps(agent("a", "local", modle="x")),
            {},
            "invalid_spec",
            "spec.modle",
        ),
        (
            json.dumps(agent("a", "local", limits={"maxSteps": "many"})),
            {},
            "invalid_spec",
            "spec.limits.maxSteps",
        ),
        ('"just a string"', {}, "invalid_request", "expected a resource"),
    ],
)
def test_bad_documents_get_their_code_and_store_nothing(
    api: httpx.Client, body: str, headers: dict[str, str], code: str, needle: str
) -> None:
    api.post("/v1/apply", json=[agent("keep", "local", instructions="original")])
    before = snapshot(api)
    response = api.post("/v1/apply", content=body, headers=headers)
    err = error(response, 422, code)
    assert needle in err["message"]
    assert snapshot(api) == before


def test_one_bad_document_means_none_is_applied(api: httpx.Client) -> None:
    docs = [agent("fine", "local"), agent("broken", "local", limits={"maxSteps": 0})]
    err = error(api.post("/v1/apply", json=docs), 422, "invalid_spec")
    assert err["details"]["problems"][0]["document"] == 1
    assert api.get("/v1/resources/agents").json()["items"] == []


def test_missing_resources_and_kinds(api: httpx.Client) -> None:
    error(api.get("/v1/resources/agents/ghost"), 404, "resource_not_found")
    error(api.delete("/v1/resources/agents/ghost"), 404, "resource_not_found")
    error(api.get("/v1/resources/gadgets"), 422, "unknown_kind")
    error(api.get("/v1/nowhere"), 404, "not_found")


def test_delete_removes_the_resource(api: httpx.Client) -> None:
    api.post("/v1/apply", json=agent("a", "local"))
    assert api.delete("/v1/resources/agents/a").json()["deleted"] is True
    error(api.get("/v1/resources/agents/a"), 404, "resource_not_found")


def test_requests_without_a_valid_key_are_refused(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        error(anonymous.get("/v1/resources/agents"), 401, "unauthenticated")
    with server.client("hgr_wrong") as wrong:
        error(wrong.get("/v1/resources/agents"), 401, "unauthenticated")
        error(wrong.post("/v1/apply", json=agent("a", "local")), 401, "unauthenticated")


def test_keys_are_bound_to_their_namespace(server: ServerThread, api: httpx.Client) -> None:
    api.post("/v1/apply", json=[scripted_model("m", {"text": "hi"}), agent("a", "m")])
    run = api.post("/v1/agents/a/runs", json={"input": "hi"}).json()

    team = api.post("/v1/keys", json={"namespace": "team-b"}).json()
    with server.client(team["key"]) as other:
        assert other.get("/v1/whoami").json()["namespace"] == "team-b"
        assert other.get("/v1/resources/agents").json()["items"] == []
        error(other.get(f"/v1/runs/{run['id']}"), 404, "run_not_found")
        error(other.get(f"/v1/runs/{run['id']}/events"), 404, "run_not_found")
        error(other.post(f"/v1/runs/{run['id']}/cancel"), 404, "run_not_found")
        error(other.post("/v1/agents/a/runs", json={"input": "hi"}), 404, "agent_not_found")
        err = error(
            other.post("/v1/apply", json=doc("Agent", "x", {}, namespace="default")),
            403,
            "namespace_mismatch",
        )
        assert "team-b" in err["message"]
        error(other.post("/v1/keys", json={"namespace": "default"}), 403, "permission_denied")
        # Its own namespace works, and stays invisible to the first.
        other.post("/v1/apply", json=agent("mine", "local"))
    assert api.get("/v1/resources/agents/mine").status_code == 404


def test_schema_and_openapi_are_served(api: httpx.Client) -> None:
    assert api.get("/v1/schemas/agents").json()["properties"]["kind"]["const"] == "Agent"
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/apply", "/v1/chat/completions", "/v1/agents/{agent}/runs"} <= set(paths)

"""Webhook triggers: a request signed with the trigger's secret starts exactly one
run; a bad or missing signature is refused and starts nothing."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from tests.helpers import ServerThread, agent, doc, scripted_model, wait_until

SECRET = "whsec-3f1c9a0b77"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_a_signed_webhook_starts_one_run_and_a_bad_one_none(
    server: ServerThread, api: httpx.Client
) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc("Secret", "hooks", {"data": {"github": SECRET}}),
            scripted_model("m", {"text": "triaged"}),
            agent("triager", "m"),
            doc(
                "Trigger",
                "github-push",
                {
                    "agent": "triager",
                    "webhook": {
                        "secret": {"secret": "hooks", "key": "github"},
                        "signatureHeader": "X-Hub-Signature-256",
                    },
                    "input": "Triage this push: {body}",
                },
            ),
        ],
    ).raise_for_status()
    url = f"{server.url}/v1/namespaces/default/triggers/github-push"
    body = json.dumps({"ref": "refs/heads/main", "commits": 3}).encode()

    def runs() -> list[dict[str, object]]:
        return list(api.get("/v1/runs").json()["items"])

    for headers in (
        {"X-Hub-Signature-256": sign(body, "wrong-secret")},
        {"X-Hub-Signature-256": sign(body + b" ")},  # a body changed in transit
        {"X-Hub-Signature-256": "sha1=abc"},
        {},
    ):
        refused = httpx.post(url, content=body, headers=headers)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_signature"
    unknown = httpx.post(f"{server.url}/v1/namespaces/default/triggers/nope", content=body)
    assert unknown.status_code == 401  # no hint that the trigger does not exist
    assert runs() == []  # nothing started

    accepted = httpx.post(url, content=body, headers={"X-Hub-Signature-256": sign(body)})
    assert accepted.status_code == 202, accepted.text
    run_id = accepted.json()["run"]
    done = wait_until(
        lambda: (r := api.get(f"/v1/runs/{run_id}").json())["status"] == "succeeded" and r,
        what="the triggered run",
    )
    assert done["agent"] == "triager"
    assert done["input"]["messages"] == [
        {"role": "user", "content": f"Triage this push: {body.decode()}"}
    ]
    assert [r["id"] for r in runs()] == [run_id]  # exactly one run

"""Webhook triggers: a request signed with the trigger's secret starts exactly one run,
however often it is delivered; a bad, missing, stale or replayed signature starts
nothing, and every refusal answers the same."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest

from tests.helpers import ServerThread, agent, doc, scripted_model, wait_until

SECRET = "whsec-3f1c9a0b77"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def sign(body: bytes, secret: str = SECRET) -> str:
    """GitHub's scheme: the body's HMAC."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard(body: bytes, delivery: str, at: float | None = None, secret: str = STANDARD_SECRET):
    """Standard Webhooks' headers for ``body`` (what its reference libraries send)."""
    stamp = str(int(time.time() if at is None else at))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": delivery,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def apply_trigger(api: httpx.Client, name: str, webhook: dict[str, Any]) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc("Secret", "hooks", {"data": {"github": SECRET, "std": STANDARD_SECRET}}),
            scripted_model("m", {"text": "triaged"}),
            agent("triager", "m"),
            doc(
                "Trigger",
                name,
                {"agent": "triager", "webhook": webhook, "input": "Triage this push: {body}"},
            ),
        ],
    ).raise_for_status()


def runs(api: httpx.Client) -> list[dict[str, Any]]:
    return list(api.get("/v1/runs").json()["items"])


def refused_alike(response: httpx.Response) -> None:
    """Every refusal is the same answer: nothing tells a prober what exists."""
    assert response.status_code == 401, response.text
    assert response.json() == {
        "error": {
            "code": "invalid_signature",
            "message": "the request is not validly signed for a trigger here",
            "details": {"hint": "sign it as the Trigger's spec.webhook.scheme says "
                        "(see docs/security.md)"},
        }
    }  # fmt: skip


def test_a_github_signed_webhook_starts_one_run_and_a_bad_one_none(
    server: ServerThread, api: httpx.Client
) -> None:
    apply_trigger(
        api,
        "github-push",
        {
            "secret": {"secret": "hooks", "key": "github"},
            "scheme": "hmac-sha256",
            "signatureHeader": "X-Hub-Signature-256",
        },
    )
    url = f"{server.url}/v1/namespaces/default/triggers/github-push"
    body = json.dumps({"ref": "refs/heads/main", "commits": 3}).encode()
    for headers in (
        {"X-Hub-Signature-256": sign(body, "wrong-secret")},
        {"X-Hub-Signature-256": sign(body + b" ")},  # a body changed in transit
        {"X-Hub-Signature-256": "sha1=abc"},
        {},
    ):
        refused_alike(httpx.post(url, content=body, headers=headers))
    refused_alike(httpx.post(f"{server.url}/v1/namespaces/default/triggers/nope", content=body))
    refused_alike(httpx.post(f"{server.url}/v1/namespaces/other/triggers/github-push", content=b""))
    assert runs(api) == []  # nothing started

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
    # The same signed request again (a replay, or a redelivery) starts nothing new.
    again = httpx.post(url, content=body, headers={"X-Hub-Signature-256": sign(body)})
    assert again.status_code == 202 and again.json() == {
        "run": run_id,
        "status": "succeeded",
        "duplicate": True,
    }
    assert [r["id"] for r in runs(api)] == [run_id]  # exactly one run


def test_a_standard_webhook_runs_once_per_delivery_and_only_while_fresh(
    server: ServerThread, api: httpx.Client
) -> None:
    apply_trigger(api, "orders", {"secret": {"secret": "hooks", "key": "std"}})
    url = f"{server.url}/v1/namespaces/default/triggers/orders"
    body = b'{"order": 42}'

    first = httpx.post(url, content=body, headers=standard(body, "msg_1"))
    assert first.status_code == 202, first.text
    replayed = httpx.post(url, content=body, headers=standard(body, "msg_1"))
    assert replayed.json()["run"] == first.json()["run"] and replayed.json()["duplicate"]
    second = httpx.post(url, content=body, headers=standard(body, "msg_2"))
    assert second.status_code == 202 and second.json()["run"] != first.json()["run"]

    stale = standard(body, "msg_3", at=time.time() - 600)  # past the 300 s window
    refused_alike(httpx.post(url, content=body, headers=stale))
    early = standard(body, "msg_4", at=time.time() + 600)
    refused_alike(httpx.post(url, content=body, headers=early))
    forged = standard(body, "msg_5") | {"webhook-id": "msg_6"}  # the id is signed too
    refused_alike(httpx.post(url, content=body, headers=forged))
    wrong = standard(body, "msg_7", secret="whsec_" + base64.b64encode(b"x" * 32).decode())
    refused_alike(httpx.post(url, content=body, headers=wrong))
    assert len(runs(api)) == 2


@pytest.mark.parametrize("scheme", ["standard", "hmac-sha256"])
def test_a_webhook_body_over_the_limit_is_refused_unread(
    server: ServerThread, api: httpx.Client, scheme: str
) -> None:
    apply_trigger(api, "big", {"secret": {"secret": "hooks", "key": "std"}, "scheme": scheme})
    body = b"x" * 2_000_000
    response = httpx.post(f"{server.url}/v1/namespaces/default/triggers/big", content=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

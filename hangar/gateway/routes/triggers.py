"""Webhook triggers: a signed POST starts a run. The signature is the only credential,
so the path names the namespace; an unsigned, wrongly signed, stale or replayed
request starts nothing new.

Every refusal answers the same (401 ``invalid_signature``, the same words): a prober
learns neither which triggers exist nor which Secrets they name. Each delivery
starts one run however often it arrives: its run's id is derived from the delivery
(``webhook-id`` for the standard scheme, the signature for GitHub's), so a repeat
finds its run already there and is answered with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hangar.errors import ConflictError, HangarError, InvalidRequestError, InvalidSignatureError
from hangar.gateway.auth import RuntimeDep
from hangar.runtime.service import RunInput
from hangar.runtime.triggers import run_id_for
from hangar.spec.trigger import Trigger, TriggerSpec, Webhook
from hangar.telemetry.tracing import bind_namespace

router = APIRouter(tags=["triggers"])


def _refused() -> InvalidSignatureError:
    return InvalidSignatureError(
        "the request is not validly signed for a trigger here",
        hint="sign it as the Trigger's spec.webhook.scheme says (see docs/security.md)",
    )


def signature_ok(secret: str, body: bytes, given: str | None) -> bool:
    """GitHub's scheme: ``sha256=<hex HMAC-SHA256 of the body>``."""
    if not given or not given.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.removeprefix("sha256=").strip().lower())


def standard_key(secret: str) -> bytes:
    """A Standard Webhooks secret (``whsec_`` and base64) as the key it holds; any
    other text is its own key."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def standard_signature(secret: str, delivery: str, timestamp: str, body: bytes) -> str:
    signed = f"{delivery}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_ok(secret: str, body: bytes, headers: Any, tolerance: float, now: float) -> str | None:
    """The delivery's id if the Standard Webhooks headers sign ``body`` within the
    tolerance, else None."""
    delivery = str(headers.get("webhook-id", ""))
    timestamp = str(headers.get("webhook-timestamp", ""))
    given = str(headers.get("webhook-signature", ""))
    if not delivery or len(delivery) > 200 or not timestamp.isdigit() or len(timestamp) > 12:
        return None
    if abs(now - int(timestamp)) > tolerance:
        return None
    expected = standard_signature(secret, delivery, timestamp, body)
    if any(hmac.compare_digest(expected, part) for part in given.split()):
        return delivery
    return None


async def _delivery(
    rt: RuntimeDep, namespace: str, name: str, request: Request
) -> tuple[TriggerSpec, str, bytes]:
    """The trigger's spec, the delivery's id and the body, or the one refusal."""
    try:
        stored = await rt.resources.get_resource(namespace, Trigger.KIND, name)
        if stored is None:
            raise _refused()
        spec = TriggerSpec.model_validate(stored.spec)
        webhook: Webhook | None = spec.webhook
        if webhook is None:
            raise _refused()
        secret = await rt.hub.secrets.resolve(namespace, webhook.secret, "webhook")
    except HangarError:
        raise _refused() from None
    body = await request.body()
    if webhook.scheme == "standard":
        delivery = standard_ok(
            secret, body, request.headers, rt.settings.webhook_tolerance_seconds, time.time()
        )
    else:
        given = request.headers.get(webhook.signature_header)
        delivery = given.strip().lower() if given and signature_ok(secret, body, given) else None
    if delivery is None:
        raise _refused()
    return spec, delivery, body


@router.post("/v1/namespaces/{namespace}/triggers/{name}", status_code=202)
async def webhook(namespace: str, name: str, request: Request, rt: RuntimeDep) -> Any:
    """Start a run of the Trigger's agent with the request's body as its input (once
    per delivery: a repeat is answered with the run it started)."""
    spec, delivery, body = await _delivery(rt, namespace, name, request)
    bind_namespace(namespace)
    run_id = run_id_for(namespace, name, "webhook", delivery)
    text = spec.input.replace("{body}", body.decode("utf-8", errors="replace"))
    try:
        run = await rt.runs.start(
            namespace, spec.agent, RunInput([{"role": "user", "content": text}]), run_id=run_id
        )
    except ConflictError:
        existing = await rt.runs.get(namespace, run_id)
        answer = {"run": existing.id, "status": existing.status.value, "duplicate": True}
        return JSONResponse(answer, status_code=202)
    except HangarError as exc:
        raise InvalidRequestError(f"trigger {name!r}: {exc.message}", hint=exc.hint) from None
    return JSONResponse({"run": run.id, "status": run.status.value}, status_code=202)

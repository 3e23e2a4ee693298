"""Webhook triggers: a signed POST starts a run. The signature (HMAC-SHA256 of the
raw body with the Trigger's secret) is the only credential, so the path names the
namespace; an unsigned or wrongly signed request starts nothing."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from hangar.errors import InvalidRequestError, InvalidSignatureError, ResourceNotFoundError
from hangar.gateway.auth import RuntimeDep
from hangar.runtime.service import RunInput
from hangar.spec.trigger import Trigger, TriggerSpec

router = APIRouter(tags=["triggers"])
MAX_BODY = 1_000_000


def signature_ok(secret: str, body: bytes, given: str | None) -> bool:
    if not given or not given.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given.removeprefix("sha256=").strip().lower())


@router.post("/v1/namespaces/{namespace}/triggers/{name}", status_code=202)
async def webhook(namespace: str, name: str, request: Request, rt: RuntimeDep) -> Any:
    """Start a run of the Trigger's agent with the request's body as its input."""
    stored = await rt.store.get_resource(namespace, Trigger.KIND, name)
    if stored is None:
        # The same answer as a bad signature: a prober learns nothing of what exists.
        raise InvalidSignatureError(f"no valid signature for trigger {name!r}")
    spec = TriggerSpec.model_validate(stored.spec)
    if spec.webhook is None:
        raise InvalidSignatureError(f"no valid signature for trigger {name!r}")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidRequestError(f"the body is over {MAX_BODY} bytes")
    secret = await rt.hub.secrets.resolve(
        namespace, spec.webhook.secret, f"Trigger {name!r} spec.webhook.secret"
    )
    if not signature_ok(secret, body, request.headers.get(spec.webhook.signature_header)):
        raise InvalidSignatureError(
            f"no valid signature for trigger {name!r}",
            hint=f"send {spec.webhook.signature_header}: sha256=<HMAC-SHA256 of the body "
            "with the trigger's secret, in hex>",
        )
    text = spec.input.replace("{body}", body.decode("utf-8", errors="replace"))
    try:
        run = await rt.runs.start(
            namespace, spec.agent, RunInput([{"role": "user", "content": text}])
        )
    except ResourceNotFoundError as exc:
        raise InvalidRequestError(f"trigger {name!r}: {exc.message}") from None
    return JSONResponse({"run": run.id, "status": run.status.value}, status_code=202)

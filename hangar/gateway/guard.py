"""The gateway's front gate, an ASGI layer around everything else: a request is
authenticated, rate limited and bounded before a byte of its body is read.

- **Authentication first.** A route that needs a key gets a 401 before its body is
  read: a 1 GB upload without a key costs the server nothing. Keys are looked up by
  the hash of their secret and kept a second (``KEY_CACHE_SECONDS``), so a revoked or
  expired key stops working within a second on every process.
- **Body limits.** A ``Content-Length`` over the route's limit is refused at once; a
  body sent without one is counted as it is read and refused when it passes it.
- **Rate limits.** Each key has a token bucket (``HANGAR_RATE_LIMIT_PER_SECOND``,
  ``…_BURST``); past it, 429 with ``Retry-After``. Per gateway process.
- **Namespace.** The key's, or for an admin key the one ``X-Hangar-Namespace`` names.
  The request's spans are stamped with it from here on.

Routes that authenticate otherwise (signed webhooks) or need nothing (health, the
kinds' JSON Schemas) pass through with only the body limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.config import Settings
from hangar.errors import (
    AuthenticationError,
    HangarError,
    NamespaceMismatchError,
    PayloadTooLargeError,
    RateLimitedError,
)
from hangar.spec.base import check_name
from hangar.store.base import KeyStore
from hangar.store.records import ApiKey
from hangar.telemetry.tracing import bind_namespace

log = logging.getLogger("hangar.gateway")

KEY_CACHE_SECONDS = 1.0
TOUCH_SECONDS = 60.0
"""A key's last use is written at most this often per process."""
NAMESPACE_HEADER = b"x-hangar-namespace"
STATE_KEY = "hangar_key"

MiB = 1024 * 1024
BODY_LIMITS: list[tuple[re.Pattern[str], int]] = [
    (re.compile(r"^/v1/knowledgebases/[^/]+/ingestions$"), 512 * MiB),
    (re.compile(r"^/v1/batches$"), 100 * 1000 * 1000),
    (re.compile(r"^/v1/sandboxes/[^/]+/(files/.+|archive)$"), 64 * MiB),
    (re.compile(r"^/v1/namespaces/[^/]+/triggers/[^/]+$"), 1000 * 1000),
    (re.compile(r"^/v1/apply$"), 5 * 1000 * 1000),
]
"""Routes that take files, with their own limits; everything else takes
``HANGAR_MAX_BODY_BYTES``."""

OPEN_PATHS = re.compile(
    r"^(/healthz|/readyz|/v1/schemas/[^/]+|/v1/namespaces/[^/]+/triggers/[^/]+)$"
)
"""Routes that need no key: health, the kinds' JSON Schemas, and webhooks (which
carry a signature instead)."""
DOCS_PATHS = re.compile(r"^(/openapi\.json|/docs.*|/redoc.*)$")


class _BodyTooLarge(PayloadTooLargeError):
    pass


@dataclasses.dataclass
class _Bucket:
    tokens: float
    at: float


class KeyCache:
    """Keys by secret, for a second: a request's key costs the store one lookup a
    second per key, and a revoked key stops working within that second."""

    def __init__(self, store: KeyStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._keys: dict[str, tuple[float, ApiKey]] = {}

    async def authenticate(self, secret: str) -> ApiKey | None:
        now = self.clock()
        cached = self._keys.get(secret)
        if cached is not None and now - cached[0] < KEY_CACHE_SECONDS:
            return cached[1]
        key = await self.store.authenticate(secret)
        if key is not None:  # unknown secrets are not kept: a flood of them must not grow this
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[secret] = (now, key)
        return key

    def forget(self, key_id: str) -> None:
        """Drop a key at once (it was revoked through this process)."""
        self._keys = {s: v for s, v in self._keys.items() if v[1].id != key_id}


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyCache,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.keys = keys
        self.store = keys.store
        self.settings = settings
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._touched: dict[str, float] = {}
        self._touches: set[asyncio.Task[None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = body_limit(path, self.settings.max_body_bytes)
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise _too_large(limit)
            if self._needs_key(path):
                key = await self.admit(scope)
                scope.setdefault("state", {})[STATE_KEY] = key
                bind_namespace(key.namespace)
            await self.app(scope, _bounded(receive, limit), tracked)
        except HangarError as exc:
            if started:
                raise
            headers = [(b"content-type", b"application/json")]
            if isinstance(exc, AuthenticationError):
                headers.append((b"www-authenticate", b"Bearer"))
            if isinstance(exc, RateLimitedError):
                headers.append((b"retry-after", str(exc.details["retry_after"]).encode()))
            await _answer(send, exc.status, exc.to_dict(), headers)

    def _needs_key(self, path: str) -> bool:
        if OPEN_PATHS.match(path):
            return False
        if path == "/metrics":
            return self.settings.metrics_auth
        if DOCS_PATHS.match(path):
            return self.settings.docs_auth
        return True

    async def admit(self, scope: Scope) -> ApiKey:
        """The key the request acts as (its namespace chosen), or the error to answer."""
        headers = dict(scope.get("headers", []))
        header = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthenticationError(
                "missing API key",
                hint="send 'Authorization: Bearer <key>'; `hangar up` prints the admin key",
            )
        key = await self.keys.authenticate(secret.strip())
        if key is None:
            raise AuthenticationError(
                "the API key is not valid",
                hint="check the key, or create one with `hangar keys create`",
            )
        unusable = key.unusable(datetime.now(UTC))
        if unusable is not None:
            raise AuthenticationError(
                f"the API key {key.prefix}… {unusable}",
                hint="ask for a new key (`hangar keys create`)",
            )
        self._limit_rate(key)
        self._touch(key)
        wanted = headers.get(NAMESPACE_HEADER)
        if wanted is not None:
            namespace = wanted.decode("latin-1").strip()
            if namespace != key.namespace:
                if not key.admin:
                    raise NamespaceMismatchError(
                        f"this API key is bound to namespace {key.namespace!r}; it cannot act "
                        f"in {namespace[:63]!r}",
                        hint="use a key of that namespace (only admin keys choose one)",
                    )
                try:
                    check_name(namespace, "namespace")
                except ValueError as exc:
                    raise NamespaceMismatchError(f"X-Hangar-Namespace: {exc}") from None
                key = dataclasses.replace(key, namespace=namespace)
        return key

    def _limit_rate(self, key: ApiKey) -> None:
        rate, burst = self.settings.rate_limit_per_second, self.settings.rate_limit_burst
        if rate <= 0:
            return
        now = self.clock()
        bucket = self._buckets.get(key.id)
        if bucket is None:
            bucket = self._buckets[key.id] = _Bucket(float(burst), now)
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1:
            wait = math.ceil((1 - bucket.tokens) / rate)
            raise RateLimitedError(
                f"too many requests with key {key.prefix}…: at most {rate:g} a second "
                f"(bursts of {burst})",
                hint=f"wait {wait} s, or spread requests out",
                details={"retry_after": wait},
            )
        bucket.tokens -= 1

    def _touch(self, key: ApiKey) -> None:
        now = self.clock()
        if now - self._touched.get(key.id, float("-inf")) < TOUCH_SECONDS:
            return
        self._touched[key.id] = now
        task = asyncio.get_running_loop().create_task(self._record_use(key.id))
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    async def _record_use(self, key_id: str) -> None:
        try:
            await self.store.touch_api_key(
                key_id, datetime.now(UTC).replace(second=0, microsecond=0)
            )
        except Exception as exc:  # a lost stamp is no reason to fail a request
            log.warning("recording the use of key %s failed: %s", key_id, exc)


def body_limit(path: str, default: int) -> int:
    for pattern, limit in BODY_LIMITS:
        if pattern.match(path):
            return limit
    return default


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> PayloadTooLargeError:
    return _BodyTooLarge(
        f"the request body is over this route's limit of {limit} bytes",
        hint="send less, or in several requests",
        details={"limit": limit},
    )


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses a body once it passes ``limit`` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return bounded


async def _answer(
    send: Callable[[Message], Awaitable[None]],
    status: int,
    body: dict[str, Any],
    headers: list[tuple[bytes, bytes]],
) -> None:
    import json

    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})

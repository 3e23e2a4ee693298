"""A span for every HTTP request, continuing the caller's W3C ``traceparent``: a run
started by a traced client lands in the client's own trace."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hangar.telemetry.tracing import Telemetry, extract_from_headers

UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
PERSONAL = ("/v1/users/",)
"""Paths that name an end user: their spans keep the route (``/v1/users/{user}``), never
the path, so no trace holds the id of a user who was (or is being) forgotten."""


class TracingMiddleware:
    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.telemetry.enabled or scope.get("path") in UNTRACED:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path = str(scope.get("path", ""))
        personal = path.startswith(PERSONAL)
        shown = "/v1/users/{user}" if personal else path
        status: dict[str, int] = {}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        with self.telemetry.tracer.start_as_current_span(
            f"{method} {shown}",
            context=extract_from_headers(scope.get("headers", [])),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": shown},
        ) as span:
            await self.app(scope, receive, send_status)
            route: Any = scope.get("route")
            if route is not None and getattr(route, "path", None):
                span.update_name(f"{method} {route.path}")
                span.set_attribute("http.route", route.path)
                if personal:
                    span.set_attribute("url.path", route.path)
            code = status.get("code", 500)
            span.set_attribute("http.response.status_code", code)
            if code >= 500:
                span.set_status(StatusCode.ERROR)

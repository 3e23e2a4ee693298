"""The FastAPI application: routers per surface, auth as a dependency, one OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from hangar import __version__
from hangar.gateway.errors import install_error_handlers, install_openapi
from hangar.gateway.guard import Guard, KeyCache
from hangar.gateway.mcp_endpoint import PATH as MCP_PATH
from hangar.gateway.mcp_endpoint import MCPEndpoint
from hangar.gateway.routes import (
    audit,
    batches,
    embeddings,
    keys,
    knowledge,
    openai_compat,
    resources,
    runs,
    sandboxes,
    sessions,
    triggers,
    usage,
    users,
)
from hangar.gateway.tracing import TracingMiddleware
from hangar.runtime.host import Runtime


def create_app(
    runtime: Runtime, *, manage_lifecycle: bool = True, workers: int | None = None
) -> FastAPI:
    """Build the app over ``runtime``. With ``manage_lifecycle`` the app starts and stops
    the runtime itself (migrations, workers) as the server starts and stops."""

    mcp = MCPEndpoint(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await runtime.start(workers=workers)
        try:
            async with mcp.running():
                yield
        finally:
            if manage_lifecycle:
                await runtime.stop()

    app = FastAPI(
        title="Hangar",
        version=__version__,
        description="Run AI agents in production: REST, OpenAI-compatible and SSE surfaces.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.keys = key_cache = KeyCache(runtime.keys)
    app.add_middleware(TracingMiddleware, telemetry=runtime.telemetry)
    # Outside the tracing: a request is admitted (key, rate, body limit) before its span
    # starts, so the span carries its namespace.
    app.add_middleware(Guard, keys=key_cache, settings=runtime.settings)
    install_error_handlers(app)
    install_openapi(app)
    for module in (
        resources,
        runs,
        openai_compat,
        embeddings,
        keys,
        sandboxes,
        audit,
        usage,
        triggers,
        batches,
        sessions,
        knowledge,
        users,
    ):
        app.include_router(module.router)
    # An ASGI app as the endpoint: Starlette hands it the raw request (the SDK needs that).
    app.add_route(MCP_PATH, mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False)  # type: ignore[arg-type]

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        """Alive: the process answers (a liveness probe)."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> dict[str, Any]:
        """Ready: started and its store answering (a readiness probe); 503 with code
        ``not_ready`` and the reason otherwise."""
        await runtime.ready()
        return {"status": "ready", "version": __version__}

    return app

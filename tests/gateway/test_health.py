"""Probes for an orchestrator: ``/healthz`` says the process answers (liveness),
``/readyz`` that it can serve (readiness: started, its store answering), neither
needing a key; not ready is a 503 with a stable code and the reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from hangar.config import Settings
from hangar.gateway.app import create_app
from hangar.runtime.host import Runtime
from tests.helpers import ServerThread


def test_a_serving_gateway_is_alive_and_ready_without_a_key(server: ServerThread) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        alive = anonymous.get("/healthz")
        ready = anonymous.get("/readyz")
    assert alive.status_code == 200 and alive.json()["status"] == "ok"
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def probe(runtime: Runtime) -> httpx.Response:
    async def ask() -> httpx.Response:
        app = create_app(runtime, manage_lifecycle=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hangar") as client:
            return await client.get("/readyz")

    return asyncio.run(ask())


def test_a_gateway_still_starting_is_not_ready(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"))
    answer = probe(runtime)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "not_ready" and "starting" in error["message"]


def test_a_gateway_whose_database_is_gone_is_not_ready_and_says_so(tmp_path: Path) -> None:
    runtime = Runtime(
        Settings(
            home=tmp_path / "home",
            telemetry="off",
            database_url="postgresql+asyncpg://hangar@127.0.0.1:9/test",  # nothing listens
        )
    )
    runtime.started = True  # as if it had started and the database went away since
    answer = probe(runtime)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "not_ready"
    assert "store does not answer" in error["message"] and error["details"]["hint"]

"""Serving at scale: runs waiting on a model hold nothing scarce, so one process with
its default settings takes a burst of a thousand of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from hangar.config import Settings
from tests.helpers import ServerThread, agent, scripted_model

SLOW = [
    scripted_model(
        "slow-model",
        {
            "toolCalls": [{"name": "current_time", "arguments": {"timezone": "UTC"}}],
            "delaySeconds": 0.5,
        },
        {"text": "It is now.", "delaySeconds": 0.5},
    ),
    agent("slow", "slow-model", tools=[{"builtin": "current_time"}]),
]


async def test_a_thousand_runs_at_once_all_succeed_with_default_settings(tmp_path: Path) -> None:
    defaults = Settings()
    server = ServerThread(
        tmp_path / "home",
        workers=defaults.workers,
        rate_limit_per_second=defaults.rate_limit_per_second,
    ).start()
    try:
        with server.client() as api:
            api.post("/v1/apply", json=SLOW).raise_for_status()
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {server.admin_key}"},
            timeout=600,
            limits=httpx.Limits(max_connections=None),
        ) as client:

            async def run() -> dict[str, object]:
                response = await client.post("/v1/agents/slow/runs", json={"input": "now?"})
                assert response.status_code == 200, response.text
                return dict(response.json())

            runs = await asyncio.gather(*(run() for _ in range(1000)))
        assert [r["status"] for r in runs] == ["succeeded"] * 1000
        assert {r["output"]["text"] for r in runs} == {"It is now."}  # type: ignore[index]
    finally:
        server.stop()

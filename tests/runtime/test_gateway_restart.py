"""Separate processes over one PostgreSQL: a run queued through one gateway is
executed by a `hangar worker`; its event stream, cut when the gateway is killed,
resumes on another gateway with `Last-Event-ID`, and every event arrives once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import POSTGRES_URL
from tests.helpers import agent, free_port, scripted_model, wait_until

HANGAR = Path(sys.executable).parent / "hangar"
STEP = {"toolCalls": [{"name": "current_time", "arguments": {}}], "delaySeconds": 0.3}


def process(command: str, schema: str, home: Path, port: int = 0) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HANGAR_DATABASE_URL": POSTGRES_URL,
        "HANGAR_DATABASE_SCHEMA": schema,
        "HANGAR_HOME": str(home),
        "HANGAR_PORT": str(port),
        "HANGAR_TELEMETRY": "off",
    }
    return subprocess.Popen(
        [str(HANGAR), command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def read_stream(response: httpx.Response, into: list[dict[str, Any]], stop_after: int) -> None:
    data: list[str] = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            into.append(json.loads("\n".join(data)))
            data = []
            if len(into) >= stop_after or into[-1]["type"] == "run_finished":
                return


def test_a_stream_cut_by_a_dying_gateway_resumes_on_another(pg_schema: str, tmp_path: Path) -> None:
    home = tmp_path / "gateway"  # both gateways share it: the same admin key
    worker = process("worker", pg_schema, tmp_path / "worker")
    first_port = free_port()
    first = process("gateway", pg_schema, home, first_port)
    second: subprocess.Popen[bytes] | None = None
    try:
        first_url = f"http://127.0.0.1:{first_port}"
        wait_until(lambda: up(first_url), what="the first gateway")
        headers = {"Authorization": f"Bearer {(home / 'admin.key').read_text().strip()}"}
        api = httpx.Client(base_url=first_url, headers=headers, timeout=30)
        api.post(
            "/v1/apply",
            json=[
                scripted_model("m", STEP, STEP, STEP, STEP, {"text": "done", "delaySeconds": 0.3}),
                agent("slow", "m", tools=[{"builtin": "current_time"}]),
            ],
        ).raise_for_status()
        run = api.post("/v1/agents/slow/runs", json={"input": "go", "wait": False}).json()
        received: list[dict[str, Any]] = []
        with api.stream(
            "GET", f"/v1/runs/{run['id']}/events", headers={"accept": "text/event-stream"}
        ) as response:
            read_stream(response, received, stop_after=4)
            os.kill(first.pid, signal.SIGKILL)  # the gateway dies mid-stream
        first.wait(10)
        assert received[-1]["type"] != "run_finished"

        second_port = free_port()
        second = process("gateway", pg_schema, home, second_port)
        second_url = f"http://127.0.0.1:{second_port}"
        wait_until(lambda: up(second_url), what="the second gateway")
        with (
            httpx.Client(base_url=second_url, headers=headers, timeout=60) as again,
            again.stream(
                "GET",
                f"/v1/runs/{run['id']}/events",
                headers={"accept": "text/event-stream", "last-event-id": str(received[-1]["seq"])},
            ) as response,
        ):
            read_stream(response, received, stop_after=10_000)
        seqs = [event["seq"] for event in received]
        assert seqs == list(range(1, len(seqs) + 1))  # every event, once, in order
        assert received[-1]["type"] == "run_finished"
        assert received[-1]["data"]["status"] == "succeeded"
    finally:
        for proc in (first, second, worker):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)

"""A worker killed with SIGKILL mid-run: its lease runs out, another worker (here, a
new process over the same store) takes the run over and goes on from its last
recorded event. No completed model call or tool call is done twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from hangar.config import Settings
from hangar.runtime.host import Runtime
from tests.helpers import agent, free_port, scripted_model, wait_until

HANGAR = Path(sys.executable).parent / "hangar"


def test_a_run_killed_mid_flight_is_resumed_by_another_worker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "HANGAR_HOME": str(home), "HANGAR_PORT": str(port)}
    env["HANGAR_LEASE_SECONDS"] = "1"
    first = subprocess.Popen(
        [str(HANGAR), "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), what="hangar up")
        key = (home / "admin.key").read_text().strip()
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        api.post(
            "/v1/apply",
            json=[
                scripted_model(
                    "script",
                    {"toolCalls": [{"name": "current_time", "arguments": {}}]},
                    {"text": "done", "delaySeconds": 3},  # the worker dies during this call
                ),
                agent("clock", "script", tools=[{"builtin": "current_time"}]),
            ],
        ).raise_for_status()
        run = api.post("/v1/agents/clock/runs", json={"input": "time?", "wait": False}).json()

        def types() -> list[str]:
            items = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
            return [e["type"] for e in items]

        wait_until(lambda: types().count("model_request") == 2, what="the second model call")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()

    # Another process over the same store: it takes the run over once the lease is out.
    finished = asyncio.run(_take_over(home, run["id"]))
    assert (finished["status"], finished["output"]["text"]) == ("succeeded", "done")
    events = finished["events"]
    kinds = Counter(e.type for e in events)
    assert kinds["run_started"] == 2 and events[-1].type == "run_finished"
    resumed = [e for e in events if e.type == "run_started"][1]
    assert resumed.data["resumed"] is True
    # The completed step 1 (model call and tool call) was not done again.
    assert [e.data["step"] for e in events if e.type == "model_response"] == [1, 2]
    tool_ids = [e.data["id"] for e in events if e.type == "tool_result"]
    assert len(tool_ids) == len(set(tool_ids)) == 1
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def _take_over(home: Path, run_id: str) -> dict[str, object]:
    runtime = Runtime(Settings(home=home, workers=2, lease_seconds=1, telemetry="off"))
    await runtime.start()
    try:
        run = await runtime.runs.wait("default", run_id, timeout=60)
        events = await runtime.store.list_events("default", run_id)
        return {"status": run.status.value, "output": run.output, "events": events}
    finally:
        await runtime.stop()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False

"""A worker killed with SIGKILL mid-run: its lease runs out, another worker (here, a
new process over the same store) takes the run over and goes on from its last
recorded event. No completed model call or tool call is done twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx

from hangar.config import Settings
from hangar.runtime.host import Runtime
from tests.helpers import agent, doc, free_port, ingested, scripted_model, wait_until

HANGAR = Path(sys.executable).parent / "hangar"


@contextlib.contextmanager
def first_process(home: Path) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """``hangar up`` with one-second leases, and a client of it; killed at the end if
    the test has not killed it already."""
    port = free_port()
    env = {**os.environ, "HANGAR_HOME": str(home), "HANGAR_PORT": str(port)}
    env["HANGAR_LEASE_SECONDS"] = "1"
    proc = subprocess.Popen(
        [str(HANGAR), "up"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), what="hangar up")
        key = (home / "admin.key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as api:
            yield proc, api
    finally:
        if proc.poll() is None:
            proc.kill()


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup: its leases simply run out
    proc.wait(10)


def test_a_run_killed_mid_flight_is_resumed_by_another_worker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with first_process(home) as (first, api):
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
        kill(first)

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


def test_a_resumed_run_keeps_the_passages_and_memories_it_was_given(tmp_path: Path) -> None:
    """Retrieved knowledge and recalled facts are recorded before the first model call;
    the worker that takes the run over puts the same ones back, searching nothing again
    (the index or the memories may have changed meanwhile)."""
    home = tmp_path / "home"
    with first_process(home) as (first, api):
        api.post(
            "/v1/apply",
            json=[
                doc("KnowledgeBase", "kb", {}),
                scripted_model("slow", {"text": "done", "delaySeconds": 3}),
                agent(
                    "reader",
                    "slow",
                    knowledge=[{"name": "kb", "retrieval": "auto", "topK": 1}],
                    memory={"user": {"recall": 3}},
                ),
            ],
        ).raise_for_status()
        ingested(api, "kb", "tides.md", b"# Tides\n\nThe moon pulls the sea into tides.")
        api.post("/v1/users/ada/memories", json={"text": "The user sails."}).raise_for_status()
        run = api.post(
            "/v1/agents/reader/runs",
            json={"input": "Why are there tides?", "user": "ada", "wait": False},
        ).json()

        def types() -> list[str]:
            items = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
            return [e["type"] for e in items]

        wait_until(lambda: "model_request" in types(), what="the model call")
        kill(first)  # during the model call

    finished = asyncio.run(_take_over(home, run["id"]))
    assert finished["status"] == "succeeded"
    events = finished["events"]
    kinds = Counter(e.type for e in events)
    assert kinds["run_started"] == 2
    assert kinds["knowledge"] == 1 and kinds["memory"] == 1  # not searched again
    assert [e.data["messages"] for e in events if e.type == "model_request"] == [2, 2]
    output = finished["output"]
    assert isinstance(output, dict)
    assert output["citations"] == [
        {"knowledge_base": "kb", "source": "tides.md", "chunk": 0, "title": "Tides"}
    ]

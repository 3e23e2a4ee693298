"""Chaos on the real PostgreSQL: 200 runs with tool calls across three `hangar worker`
processes, while workers are killed with SIGKILL at random moments and restarted.
Every run completes exactly once; no run is lost and no completed step is repeated
(checked from each run's events)."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from hangar.config import Settings
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec import parse_document
from hangar.store.sql import SqlStore
from tests.conftest import POSTGRES_URL
from tests.helpers import agent, scripted_model

HANGAR = Path(sys.executable).parent / "hangar"
RUNS = 200
WORKERS = 3
STEP = {"toolCalls": [{"name": "current_time", "arguments": {}}], "delaySeconds": 0.05}


def start_worker(schema: str, home: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HANGAR_DATABASE_URL": POSTGRES_URL,
        "HANGAR_DATABASE_SCHEMA": schema,
        "HANGAR_HOME": str(home),
        "HANGAR_LEASE_SECONDS": "1",
        "HANGAR_WORKERS": "6",
        "HANGAR_TELEMETRY": "off",
    }
    return subprocess.Popen(
        [str(HANGAR), "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def test_runs_survive_workers_killed_at_random(pg_schema: str, tmp_path: Path) -> None:
    store = SqlStore(POSTGRES_URL, schema=pg_schema)
    await store.migrate()
    # A runtime with no run slots of its own: it only queues runs and reads them back.
    runtime = Runtime(Settings(home=tmp_path / "client", telemetry="off"), store=store)
    await runtime.start(workers=0)
    for document in (
        scripted_model("m", STEP, STEP, {"text": "done", "delaySeconds": 0.05}),
        agent("busy", "m", tools=[{"builtin": "current_time"}]),
    ):
        resource, _ = parse_document(document)
        assert resource is not None
        await store.apply_resource("default", resource)
    runs = [
        await runtime.runs.start("default", "busy", RunInput([{"role": "user", "content": "go"}]))
        for _ in range(RUNS)
    ]
    homes = [tmp_path / f"worker{i}" for i in range(WORKERS)]
    workers = [start_worker(pg_schema, home) for home in homes]
    chaos = random.Random(20261125)
    kills = 0
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            counts = {state: n for _, state, n in await store.count_runs()}
            if counts.get("succeeded", 0) + counts.get("failed", 0) == RUNS:
                break
            await asyncio.sleep(chaos.uniform(0.1, 0.6))
            # Aim at a worker that holds runs right now, so every kill lands mid-run.
            holders = {
                run.worker.split("/")[0].rsplit("-", 1)[-1]
                for run in await store.list_runs("default", limit=RUNS)
                if run.status.value == "running" and run.worker
            }
            busy = [i for i, proc in enumerate(workers) if str(proc.pid) in holders]
            if kills < 12 and busy:
                victim = chaos.choice(busy)
                workers[victim].kill()  # SIGKILL: no cleanup, leases simply run out
                workers[victim].wait(10)
                workers[victim] = start_worker(pg_schema, homes[victim])
                kills += 1
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await runtime.stop()

    assert kills >= 5
    store = SqlStore(POSTGRES_URL, schema=pg_schema)
    resumed = 0
    try:
        for run in runs:
            final = await store.get_run("default", run.id)
            assert final is not None and final.status.value == "succeeded", (run.id, final)
            events = await store.list_events("default", run.id)
            kinds = Counter(e.type for e in events)
            assert kinds["run_finished"] == 1, run.id  # completed exactly once
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            steps = [e.data["step"] for e in events if e.type == "model_response"]
            assert steps == [1, 2, 3], (run.id, steps)  # no model call completed twice
            results = [e.data["id"] for e in events if e.type == "tool_result"]
            assert len(results) == len(set(results)) == 2, (run.id, results)
            assert events[-1].type == "run_finished"
            resumed += kinds["run_started"] > 1
        assert resumed >= 3  # the kills landed mid-run, and those runs were taken over
    finally:
        await store.close()

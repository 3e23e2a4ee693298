"""Scale to zero: runs wait in the queue with no worker (the queue depth metric says
how many); a cold `hangar worker` picks them up, and exits once it has been idle for
HANGAR_WORKER_IDLE_SECONDS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from hangar.config import Settings
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec import parse_document
from tests.helpers import agent, scripted_model

HANGAR = Path(sys.executable).parent / "hangar"


def queue_depth(exposition: bytes) -> float:
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            if sample.name == "hangar_queue_depth" and sample.labels["namespace"] == "default":
                return float(sample.value)
    return 0.0


async def test_a_cold_worker_drains_the_queue_then_exits_when_idle(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings(home=home, telemetry="off")
    runtime = Runtime(settings)
    await runtime.start(workers=0)  # a gateway's runtime: it queues, it runs nothing
    try:
        for document in (scripted_model("m", {"text": "done"}), agent("a", "m")):
            resource, _ = parse_document(document)
            assert resource is not None
            await runtime.store.apply_resource("default", resource)
        runs = [
            await runtime.runs.start("default", "a", RunInput([{"role": "user", "content": "x"}]))
            for _ in range(3)
        ]
        assert queue_depth(await runtime.exposition()) == 3  # what KEDA reads

        env = {**os.environ, "HANGAR_HOME": str(home), "HANGAR_WORKER_IDLE_SECONDS": "1"}
        worker = await asyncio.to_thread(
            subprocess.run,
            [str(HANGAR), "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert worker.returncode == 0, worker.stderr
        assert "exiting (scale to zero)" in worker.stdout
        for run in runs:
            done = await runtime.runs.get("default", run.id)
            assert done.status.value == "succeeded"
        assert queue_depth(await runtime.exposition()) == 0
    finally:
        await runtime.stop()

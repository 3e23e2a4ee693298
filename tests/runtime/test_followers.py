"""Followers of a run (a request waiting for its end, a stream) hear of it through the
bus, and read the store themselves less and less often while nothing comes: a
thousand waiting requests must not keep the server busy reading."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hangar.config import Settings
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec.loader import parse_document
from hangar.store.records import RunRecord, RunStatus
from hangar.store.sql import SqlStore
from tests.helpers import agent, scripted_model

WAITER = "the waiting request"


class CountingReads(SqlStore):
    """Counts the reads of a run made by the waiting request's task."""

    reads = 0

    async def get_run(self, namespace: str, run_id: str) -> RunRecord | None:
        task = asyncio.current_task()
        if task is not None and task.get_name() == WAITER:
            self.reads += 1
        return await super().get_run(namespace, run_id)


async def test_a_waiting_request_reads_the_store_less_and_less_often(tmp_path: Path) -> None:
    store = CountingReads(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    runtime = Runtime(Settings(home=tmp_path, telemetry="off"), store=store)
    await runtime.start()
    try:
        for document in (
            scripted_model("m", {"text": "done", "delaySeconds": 6}),
            agent("slow", "m"),
        ):
            resource, _ = parse_document(document)
            assert resource is not None
            await store.apply_resource("default", resource)
        run = await runtime.runs.start(
            "default", "slow", RunInput([{"role": "user", "content": "go"}])
        )
        waiting = asyncio.create_task(runtime.runs.wait("default", run.id, timeout=60), name=WAITER)
        finished = await waiting
        assert finished.status is RunStatus.SUCCEEDED
        # At 0, 0.5, 1.5 and 3.5 s, and at its end (heard on the bus): reading every
        # half second made thirteen.
        assert store.reads <= 6
    finally:
        await runtime.stop()

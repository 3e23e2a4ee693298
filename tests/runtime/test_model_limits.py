"""Runs past a Model's limits wait for it, and say so: each waiting run records a
``model_waiting`` event, ``/metrics`` counts the calls waiting now and those that
waited. One namespace's limits never hold another's runs."""

from __future__ import annotations

from pathlib import Path

from hangar.config import Settings
from hangar.runtime.events import ModelWaiting, parse
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec.loader import parse_document
from hangar.store.records import RunStatus
from tests.helpers import agent, eventually, scripted_model

SLOW = {"text": "done", "delaySeconds": 0.5}


async def test_runs_past_a_models_concurrency_wait_for_it_and_say_so(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path, telemetry="off"))
    await runtime.start()
    try:
        for namespace, limits in (("busy", {"maxConcurrency": 1}), ("other", {})):
            for document in (scripted_model("m", SLOW, limits=limits), agent("a", "m")):
                resource, _ = parse_document(document)
                assert resource is not None
                await runtime.store.apply_resource(namespace, resource)
        hello = RunInput([{"role": "user", "content": "go"}])
        busy = [await runtime.runs.start("busy", "a", hello) for _ in range(3)]
        other = await runtime.runs.start("other", "a", hello)

        async def two_waiting() -> bool:
            scrape = (await runtime.exposition()).decode()
            return (
                'hangar_model_waiting{model="m",namespace="busy",reason="max_concurrency"} 2.0'
                in scrape
            )

        await eventually(two_waiting, what="two calls waiting on the Model, in /metrics")
        ended = [await runtime.runs.wait(r.namespace, r.id, timeout=60) for r in [*busy, other]]
        assert all(run.status is RunStatus.SUCCEEDED for run in ended)

        async def waits(namespace: str, run_id: str) -> list[ModelWaiting]:
            stored = await runtime.store.list_events(namespace, run_id)
            return [
                e for e in (parse(s.type, s.data) for s in stored) if isinstance(e, ModelWaiting)
            ]

        waited = [await waits("busy", run.id) for run in busy]
        assert sorted(len(w) for w in waited) == [0, 1, 1]  # the first went at once
        assert {(w.model, w.reason) for ws in waited for w in ws} == {("m", "max_concurrency")}
        assert await waits("other", other.id) == []  # another namespace's "m" is its own
        scrape = (await runtime.exposition()).decode()
        assert (
            'hangar_model_waits_total{agent="a",model="m",namespace="busy",'
            'reason="max_concurrency"} 2.0' in scrape
        )
        assert "hangar_model_waiting{" not in scrape  # none waits now
    finally:
        await runtime.stop()

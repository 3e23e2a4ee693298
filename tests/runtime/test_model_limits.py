"""Runs past a Model's limits wait for it, and say so. A new run of an agent whose
Model has no room in this process waits ``queued`` (in the API and ``/metrics``),
and is claimed when the Model has room; a call of a run already going (or of an
agent this process has not run yet, whose Model it does not know) waits in the
Model's line, recorded as a ``model_waiting`` event, and ``/metrics`` counts the
calls waiting now and those that waited. One namespace's limits never hold another's
runs."""

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
            documents = [scripted_model("m", SLOW, limits=limits)]
            documents += [agent(name, "m") for name in ("a", "b", "c")]
            for document in documents:
                resource, _ = parse_document(document)
                assert resource is not None
                await runtime.store.apply_resource(namespace, resource)
        hello = RunInput([{"role": "user", "content": "go"}])
        # Three agents new to this process: their runs start, and their calls line up.
        busy = [await runtime.runs.start("busy", name, hello) for name in ("a", "b", "c")]
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
        waits_total = [
            line
            for line in scrape.splitlines()
            if line.startswith("hangar_model_waits_total{") and 'reason="max_concurrency"' in line
        ]
        assert len(waits_total) == 2 and all(line.endswith(" 1.0") for line in waits_total)
        assert "hangar_model_waiting{" not in scrape  # none waits now
    finally:
        await runtime.stop()


async def test_new_runs_past_a_models_room_wait_queued_and_all_succeed(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path, telemetry="off"))
    await runtime.start()
    try:
        for namespace, limits in (("busy", {"maxConcurrency": 1}), ("other", {})):
            for document in (scripted_model("m", SLOW, limits=limits), agent("a", "m")):
                resource, _ = parse_document(document)
                assert resource is not None
                await runtime.store.apply_resource(namespace, resource)
        hello = RunInput([{"role": "user", "content": "go"}])
        first = await runtime.runs.start("busy", "a", hello)  # this process learns a's Model
        assert (await runtime.runs.wait("busy", first.id, timeout=60)).status.finished

        busy = [await runtime.runs.start("busy", "a", hello) for _ in range(3)]
        other = await runtime.runs.start("other", "a", hello)

        async def one_running_two_queued() -> bool:
            listed = await runtime.store.list_runs("busy")
            states = sorted(r.status.value for r in listed if r.id != first.id)
            scrape = (await runtime.exposition()).decode()
            return (
                states == ["queued", "queued", "running"]
                and 'hangar_runs{namespace="busy",state="queued"} 2.0' in scrape
                and 'hangar_queue_depth{namespace="busy"} 2.0' in scrape
            )

        await eventually(one_running_two_queued, what="one run of 'a' running, two queued")
        ended = [await runtime.runs.wait(r.namespace, r.id, timeout=60) for r in [*busy, other]]
        assert [run.status for run in ended] == [RunStatus.SUCCEEDED] * 4
        for run in busy:  # each waited queued, none inside a call
            stored = await runtime.store.list_events("busy", run.id)
            assert ModelWaiting.TYPE.value not in [s.type for s in stored]
        # In the order they came, one after the other.
        started = [r.started_at for r in ended[:3]]
        assert started == sorted(started)  # type: ignore[type-var]
    finally:
        await runtime.stop()

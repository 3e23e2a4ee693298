"""A model request is held back and stored with the model's response, in one statement;
a slow model's request is stored on its own while the model works, and a request whose
call failed is stored with the run's end. Either way the events are gap-free and in
the order they happened."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hangar.config import Settings
from hangar.runtime.worker import Worker
from hangar.spec import parse_document
from hangar.store.records import ClaimRequest, LedgerEntry, RunEvent, RunRecord, RunStatus
from hangar.store.sql import SqlStore
from hangar.usage import Usage
from tests.helpers import agent, eventually, queued_run, scripted_model, worker_on


class Statements(SqlStore):
    """A store that notes the event types each of its appends and finishes stored."""

    stored: list[list[str]]

    async def append_event(
        self,
        run_id: str,
        namespace: str,
        type: str,
        data: dict[str, Any],
        *,
        holder: str | None = None,
        ledger: LedgerEntry | None = None,
        before: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> RunEvent:
        event = await super().append_event(
            run_id, namespace, type, data, holder=holder, ledger=ledger, before=before
        )
        self.stored.append([*(kind for kind, _ in before), type])
        return event

    async def finish_run(self, run_id: str, status: RunStatus, **kwargs: Any) -> RunRecord:
        run = await super().finish_run(run_id, status, **kwargs)
        self.stored.append([kind for kind, _ in kwargs.get("events", ())])
        return run

    async def finish_and_claim(
        self, run_id: str, status: RunStatus, claim: ClaimRequest, **kwargs: Any
    ) -> tuple[RunRecord, RunRecord | None]:
        ended = await super().finish_and_claim(run_id, status, claim, **kwargs)
        self.stored.append([kind for kind, _ in kwargs.get("events", ())])
        return ended


async def run_on(tmp_path: Path, *steps: dict[str, Any]) -> tuple[Statements, Worker, str]:
    store = Statements(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    store.stored = []
    await store.migrate()
    for document in (scripted_model("m", *steps), agent("a", "m")):
        resource, _ = parse_document(document)
        assert resource is not None
        await store.apply_resource("default", resource)
    worker = worker_on(store, Settings(home=tmp_path))
    run = await store.create_run(queued_run(agent="a"))
    worker.start(1)
    return store, worker, run.id


async def ended(store: SqlStore, run_id: str) -> list[RunEvent]:
    async def last_is_finished() -> list[RunEvent] | None:
        events = await store.list_events("default", run_id)
        return events if events and events[-1].type == "run_finished" else None

    events: list[RunEvent] = await eventually(last_is_finished, what="the run's end")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    return events


async def test_a_quick_models_request_is_stored_with_its_response(tmp_path: Path) -> None:
    store, worker, run_id = await run_on(tmp_path, {"text": "hi"})
    try:
        events = await ended(store, run_id)
        assert [e.type for e in events] == [
            "run_started",
            "model_request",
            "model_response",
            "final",
            "run_finished",
        ]
        # The claim stored run_started; then two statements for the other four (the
        # second is noted once the slot's next claim, with it, has returned).
        await eventually(lambda: len(store.stored) == 2, what="the end's statement noted")
        assert store.stored == [["model_request", "model_response"], ["final", "run_finished"]]
    finally:
        await worker.stop()
        await store.close()


async def test_a_slow_models_request_is_stored_while_the_model_works(tmp_path: Path) -> None:
    store, worker, run_id = await run_on(tmp_path, {"text": "hi", "delaySeconds": 1.5})
    try:

        async def asked() -> list[str] | None:
            types = [e.type for e in await store.list_events("default", run_id)]
            return types if "model_request" in types else None

        assert await eventually(asked, what="the request") == ["run_started", "model_request"]
        assert store.stored == [["model_request"]]  # the model has not answered yet
        await ended(store, run_id)
        await eventually(lambda: len(store.stored) == 3, what="the end's statement noted")
        assert store.stored[1:] == [["model_response"], ["final", "run_finished"]]
    finally:
        await worker.stop()
        await store.close()


async def test_a_request_whose_call_failed_is_stored_with_the_runs_end(tmp_path: Path) -> None:
    store, worker, run_id = await run_on(tmp_path, {"error": "overloaded"})
    try:
        events = await ended(store, run_id)
        assert [e.type for e in events] == ["run_started", "model_request", "error", "run_finished"]
        await eventually(lambda: store.stored, what="the end's statement noted")
        assert store.stored == [["model_request", "error", "run_finished"]]
        run = await store.get_run("default", run_id)
        assert run is not None and run.status is RunStatus.FAILED
        assert run.usage == Usage()
    finally:
        await worker.stop()
        await store.close()

"""Resuming from events: a run picked up again goes on from what its events record,
never asking the model again for a step it answered."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hangar.models.messages import Message
from hangar.models.scripted import ScriptedModel
from hangar.runtime.events import EventType, StopReason
from hangar.runtime.loop import LoopInput, run_loop
from hangar.runtime.replay import replay
from hangar.spec.agent import AgentSpec
from hangar.spec.model import ScriptStep
from hangar.store.records import RunEvent, RunStatus
from tests.runtime.test_loop import Recorded

NEVER = [ScriptStep.model_validate({"error": "the model must not be asked again"})]


def events(*items: tuple[str, dict[str, Any]]) -> list[RunEvent]:
    return [
        RunEvent("run_x", seq, "default", kind, data, datetime.now(UTC))
        for seq, (kind, data) in enumerate(items, start=1)
    ]


def answered(text: str) -> tuple[str, dict[str, Any]]:
    return (
        EventType.MODEL_RESPONSE.value,
        {
            "step": 1,
            "model": "m",
            "message": {"role": "assistant", "content": text},
            "usage": {"input_tokens": 5, "output_tokens": 2},
        },
    )


async def resume(stored: list[RunEvent]) -> tuple[Any, Recorded]:
    recorded = Recorded()
    outcome = await run_loop(
        LoopInput(
            agent=AgentSpec(),
            model=ScriptedModel("m", NEVER),
            messages=[Message(role="user", content="hello")],
            record=recorded,
        ),
        replay(stored, set()),
    )
    return outcome, recorded


async def test_a_worker_that_died_after_the_answer_leaves_only_the_ending_to_do() -> None:
    outcome, recorded = await resume(events((EventType.RUN_STARTED.value, {}), answered("Paris.")))
    assert (outcome.status, outcome.reason) == (RunStatus.SUCCEEDED, StopReason.COMPLETED)
    assert outcome.output["text"] == "Paris." and outcome.usage.input_tokens == 5
    assert recorded.of(EventType.MODEL_REQUEST) == []  # the model was not asked again
    assert recorded.of(EventType.FINAL) == [{"text": "Paris."}]


async def test_a_final_event_already_stored_is_not_stored_twice() -> None:
    outcome, recorded = await resume(
        events(answered("Paris."), (EventType.FINAL.value, {"text": "Paris."}))
    )
    assert outcome.status == RunStatus.SUCCEEDED
    assert recorded.events == []

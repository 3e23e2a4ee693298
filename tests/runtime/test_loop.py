"""The agent loop, in process: steps, concurrent tools, tool failures, limits."""

from __future__ import annotations

import asyncio
from typing import Any

from hangar.models.messages import Message, ToolDefinition
from hangar.models.scripted import ScriptedModel
from hangar.runtime.events import Event, EventType, StopReason
from hangar.runtime.loop import LoopInput, run_loop
from hangar.spec.agent import AgentSpec, Limits
from hangar.spec.model import Pricing, ScriptStep
from hangar.store.records import RunStatus
from hangar.tools.base import Tool
from hangar.tools.function import FunctionTool


def steps(*raw: dict[str, Any]) -> list[ScriptStep]:
    return [ScriptStep.model_validate(s) for s in raw]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


class Recorded:
    def __init__(self) -> None:
        self.events: list[tuple[EventType, dict[str, Any]]] = []

    async def __call__(self, event: Event) -> None:
        # Kept as the stored JSON: these tests also pin the wire format of each event.
        self.events.append((event.TYPE, event.to_json()))

    def of(self, type: EventType) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t is type]


async def run(
    script: list[ScriptStep],
    tools: dict[str, Tool] | None = None,
    limits: Limits | None = None,
    **extra: Any,
) -> tuple[Any, Recorded]:
    recorded = Recorded()
    outcome = await run_loop(
        LoopInput(
            agent=AgentSpec(instructions="Be brief.", limits=limits or Limits()),
            model=ScriptedModel("m", script),
            messages=[Message(role="user", content="hello")],
            tools=tools or {},
            record=recorded,
            **extra,
        )
    )
    return outcome, recorded


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_final_answer_ends_the_run_and_every_step_is_recorded() -> None:
    outcome, rec = await run(
        steps({"toolCalls": [call("add", a=2, b=3)]}, {"text": "It is 5."}),
        {"add": FunctionTool(add)},
    )
    assert (outcome.status, outcome.reason) == (RunStatus.SUCCEEDED, StopReason.COMPLETED)
    assert outcome.output["text"] == "It is 5."
    assert [t for t, _ in rec.events] == [
        EventType.MODEL_REQUEST,
        EventType.MODEL_RESPONSE,
        EventType.TOOL_CALL,
        EventType.TOOL_RESULT,
        EventType.MODEL_REQUEST,
        EventType.MODEL_RESPONSE,
        EventType.FINAL,
    ]
    assert rec.of(EventType.TOOL_RESULT)[0]["content"] == "5"
    assert outcome.usage.total_tokens == sum(
        r["usage"]["total_tokens"] for r in rec.of(EventType.MODEL_RESPONSE)
    )


async def test_tool_calls_of_one_turn_run_concurrently() -> None:
    barrier = asyncio.Barrier(3)

    async def meet(who: str) -> str:
        """Wait until three callers have arrived."""
        async with asyncio.timeout(5):
            await barrier.wait()
        return f"{who} met"

    script = steps({"toolCalls": [call("meet", who=w) for w in "abc"]}, {"text": "done"})
    outcome, rec = await run(script, {"meet": FunctionTool(meet)})
    results = rec.of(EventType.TOOL_RESULT)
    assert sorted(r["content"] for r in results) == ["a met", "b met", "c met"]
    assert not any(r["is_error"] for r in results)
    assert outcome.status == RunStatus.SUCCEEDED


async def test_a_tool_that_raises_becomes_an_error_the_model_sees() -> None:
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    seen: list[str] = []

    class Spy(ScriptedModel):
        def stream(self, request):  # type: ignore[no-untyped-def]
            seen.extend(m.content or "" for m in request.messages if m.role == "tool")
            return super().stream(request)

    recorded = Recorded()
    outcome = await run_loop(
        LoopInput(
            agent=AgentSpec(),
            model=Spy("m", steps({"toolCalls": [call("explode")]}, {"text": "sorry"})),
            messages=[Message(role="user", content="go")],
            tools={"explode": FunctionTool(explode)},
            record=recorded,
        )
    )
    assert outcome.status == RunStatus.SUCCEEDED
    (result,) = recorded.of(EventType.TOOL_RESULT)
    assert result["is_error"] and "disk on fire" in result["content"]
    assert seen == [result["content"]]


async def test_bad_arguments_and_unknown_tools_are_reported_not_raised() -> None:
    script = steps({"toolCalls": [call("add", a="x"), call("nope")]}, {"text": "ok"})
    outcome, rec = await run(script, {"add": FunctionTool(add)})
    by_name = {r["name"]: r for r in rec.of(EventType.TOOL_RESULT)}
    assert (
        by_name["add"]["is_error"] and "invalid arguments for add: a:" in by_name["add"]["content"]
    )
    assert by_name["nope"]["is_error"] and "no tool named 'nope'" in by_name["nope"]["content"]
    assert outcome.status == RunStatus.SUCCEEDED


async def test_a_run_over_its_step_limit_fails_with_max_steps() -> None:
    looping = steps({"toolCalls": [call("add", a=1, b=1)]})  # the last step repeats
    outcome, rec = await run(looping, {"add": FunctionTool(add)}, Limits(max_steps=3))
    assert (outcome.status, outcome.reason) == (RunStatus.FAILED, StopReason.MAX_STEPS)
    assert len(rec.of(EventType.MODEL_REQUEST)) == 3
    assert outcome.error is not None and "3 steps" in outcome.error.message


async def test_a_run_over_its_token_limit_fails_with_max_tokens() -> None:
    script = steps({"toolCalls": [call("add", a=1, b=1)], "inputTokens": 60, "outputTokens": 10})
    outcome, rec = await run(script, {"add": FunctionTool(add)}, Limits(max_tokens=100))
    assert (outcome.status, outcome.reason) == (RunStatus.FAILED, StopReason.MAX_TOKENS)
    assert len(rec.of(EventType.MODEL_RESPONSE)) == 2
    assert outcome.usage.total_tokens == 140


async def test_caller_tools_are_handed_back_not_run() -> None:
    weather = ToolDefinition("weather", "Weather in a city", {"type": "object"})
    script = steps({"toolCalls": [call("weather", city="Oslo")]})
    outcome, rec = await run(script, caller_tools=(weather,))
    assert (outcome.status, outcome.reason) == (RunStatus.SUCCEEDED, StopReason.TOOL_CALLS)
    (handed,) = outcome.output["message"]["tool_calls"]
    assert handed["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'}
    assert rec.of(EventType.TOOL_RESULT) == []


async def test_cost_comes_from_the_model_prices() -> None:
    script = steps({"text": "hi", "inputTokens": 1_000_000, "outputTokens": 500_000})
    outcome, _ = await run(script, pricing=Pricing(input_per_million=2, output_per_million=8))
    assert outcome.usage.cost == 6.0


async def test_instructions_become_the_system_message() -> None:
    captured: list[Message] = []

    class Spy(ScriptedModel):
        def stream(self, request):  # type: ignore[no-untyped-def]
            captured.extend(request.messages)
            return super().stream(request)

    await run_loop(
        LoopInput(
            agent=AgentSpec(instructions="Be brief."),
            model=Spy("m", steps({"text": "ok"})),
            messages=[Message(role="user", content="hi")],
        )
    )
    assert [(m.role, m.content) for m in captured] == [("system", "Be brief."), ("user", "hi")]

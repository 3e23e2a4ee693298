"""The bundled local model, for real: llama.cpp in process, no network."""

from __future__ import annotations

import json

from hangar.models import Message, ModelRequest, ModelSettings, ToolDefinition, complete
from hangar.models.local import LocalChatModel, bundled_model_path, tool_schema

CLOCK = ToolDefinition(
    "current_time",
    "The current time in a time zone.",
    {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]},
)


def local() -> LocalChatModel:
    return LocalChatModel("local", bundled_model_path(), context=2048)


async def test_the_bundled_model_answers_and_streams() -> None:
    deltas: list[str] = []

    async def collect(text: str) -> None:
        deltas.append(text)

    request = ModelRequest(
        (Message(role="user", content="What is the capital of France? One word."),),
        settings=ModelSettings(temperature=0, max_output_tokens=24),
    )
    response = await complete(local(), request, collect)
    assert response.message.content and "".join(deltas) == response.message.content
    assert len(deltas) > 1
    assert response.usage.output_tokens == len(deltas)
    assert "paris" in response.message.content.lower()


async def test_offered_tools_constrain_the_reply_to_a_call_or_an_answer() -> None:
    """The grammar leaves the small model two shapes only; whichever it picks parses."""
    request = ModelRequest(
        (Message(role="user", content="What time is it in Tokyo? Use the tool."),),
        tools=(CLOCK,),
        settings=ModelSettings(temperature=0, max_output_tokens=64),
    )
    response = await complete(local(), request)
    if response.message.tool_calls:
        (call,) = response.message.tool_calls
        assert call.name == "current_time"
        assert isinstance(json.loads(call.arguments)["timezone"], str)
        assert response.finish_reason == "tool_calls"
    else:
        assert response.message.content is not None and not response.message.content.startswith("{")


def test_the_tool_schema_offers_exactly_an_answer_or_each_tool() -> None:
    schema = tool_schema(ModelRequest((), tools=(CLOCK,)))
    options = schema["anyOf"]
    assert options[0]["required"] == ["answer"]
    assert options[1]["properties"]["tool"] == {"const": "current_time"}
    assert options[1]["properties"]["arguments"]["required"] == ["timezone"]

"""The scripted model: deterministic, stateless replies for tests and benchmarks."""

from __future__ import annotations

import pytest

from hangar.errors import ModelProviderError
from hangar.models import Message, ModelRequest, ToolCall, complete
from hangar.models.scripted import ScriptedModel
from hangar.spec.model import ScriptStep


def model(*steps: dict[str, object]) -> ScriptedModel:
    return ScriptedModel("s", [ScriptStep.model_validate(s) for s in steps])


def request(*messages: Message) -> ModelRequest:
    return ModelRequest(tuple(messages))


USER = Message(role="user", content="hi")
CALL = Message(role="assistant", tool_calls=(ToolCall("c", "t", "{}"),))
RESULT = Message(role="tool", content="ok", tool_call_id="c")


async def test_the_step_is_the_count_of_assistant_turns_since_the_last_user_message() -> None:
    m = model({"toolCalls": [{"name": "t"}]}, {"text": "second"}, {"text": "third"})
    assert (await complete(m, request(USER))).message.tool_calls[0].name == "t"
    assert (await complete(m, request(USER, CALL, RESULT))).message.content == "second"
    assert (await complete(m, request(USER, CALL, RESULT, CALL, RESULT))).message.content == "third"
    # A new user message starts the script over; past the end the last step repeats.
    assert (await complete(m, request(USER, CALL, RESULT, USER))).message.tool_calls
    assert (await complete(m, request(USER, *[CALL, RESULT] * 5))).message.content == "third"


async def test_text_streams_word_by_word_and_usage_is_deterministic() -> None:
    m = model({"text": "one two three"})
    deltas: list[str] = []

    async def collect(text: str) -> None:
        deltas.append(text)

    first = await complete(m, request(USER), collect)
    second = await complete(m, request(USER))
    assert deltas == ["one ", "two ", "three"]
    assert first.usage == second.usage and first.usage.output_tokens > 0


async def test_scripted_usage_and_errors() -> None:
    assert (
        await complete(model({"text": "x", "inputTokens": 7, "outputTokens": 3}), request(USER))
    ).usage.total_tokens == 10
    with pytest.raises(ModelProviderError, match="overloaded"):
        await complete(model({"error": "overloaded"}), request(USER))


def test_a_step_must_say_something() -> None:
    with pytest.raises(ValueError, match="needs 'text', 'toolCalls' or 'error'"):
        ScriptStep.model_validate({"delaySeconds": 1})

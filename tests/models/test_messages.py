"""OpenAI-format messages in, with errors that say which field is wrong."""

from __future__ import annotations

import pytest

from hangar.errors import InvalidRequestError
from hangar.models.anthropic import to_anthropic
from hangar.models.messages import Message, ToolCall


def test_openai_messages_round_trip() -> None:
    raw = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
        ],
    }
    message = Message.from_openai(raw)
    assert message.tool_calls == (ToolCall("c1", "f", '{"a": 1}'),)
    assert message.to_openai() == raw


def test_text_parts_are_joined_and_developer_is_system() -> None:
    message = Message.from_openai(
        {
            "role": "developer",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        }
    )
    assert (message.role, message.content) == ("system", "ab")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"role": "robot"}, "messages[3].role"),
        ("hello", "must be an object"),
        ({"role": "tool", "content": "x"}, "tool_call_id is required"),
        ({"role": "user", "content": [{"type": "image_url"}]}, "only text content"),
        ({"role": "assistant", "tool_calls": [{"function": {}}]}, "needs function.name"),
    ],
)
def test_bad_messages_name_the_field(raw: object, needle: str) -> None:
    with pytest.raises(InvalidRequestError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        Message.from_openai(raw, "messages[3]")


def test_parsed_arguments_explain_bad_json() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        ToolCall("c", "f", "{oops").parsed_arguments()
    with pytest.raises(ValueError, match="JSON object"):
        ToolCall("c", "f", "[1]").parsed_arguments()


def test_anthropic_translation_moves_system_and_folds_tool_results() -> None:
    system, messages = to_anthropic(
        (
            Message(role="system", content="Be brief."),
            Message(role="user", content="Weather?"),
            Message(
                role="assistant",
                content="Checking.",
                tool_calls=(ToolCall("t1", "weather", '{"city": "Oslo"}'),),
            ),
            Message(role="tool", content="sunny", tool_call_id="t1"),
        )
    )
    assert system == "Be brief."
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
        },
    ]

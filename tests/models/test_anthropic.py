"""The anthropic provider, through the official SDK, against a server that speaks the
Messages API's streaming events (text, tool_use with streamed JSON, usage)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hangar.errors import ModelProviderError
from hangar.models import Message, ModelRequest, ToolDefinition, complete
from hangar.models.anthropic import AnthropicChatModel
from tests.helpers import serving

received: list[dict[str, Any]] = []


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"


async def messages(request: Request) -> Response:
    body = await request.json()
    received.append(body)
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "")
    if key.removeprefix("Bearer ") != "sk-test":
        error = {"type": "authentication_error", "message": "invalid x-api-key"}
        return JSONResponse({"type": "error", "error": error}, status_code=401)
    wants_tool = body.get("tools") and body["messages"][-1]["content"][0]["type"] == "text"

    async def events() -> AsyncIterator[str]:
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 21, "output_tokens": 1},
        }
        yield sse("message_start", {"message": message})
        if wants_tool:
            block = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
            yield sse("content_block_start", {"index": 0, "content_block": block})
            for part in ('{"ci', 'ty": "Os', 'lo"}'):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield sse("content_block_delta", {"index": 0, "delta": delta})
            stop = "tool_use"
        else:
            yield sse(
                "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
            )
            for word in ("Sunny ", "in ", "Oslo."):
                yield sse(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": word}},
                )
            stop = "end_turn"
        yield sse("content_block_stop", {"index": 0})
        yield sse("message_delta", {"delta": {"stop_reason": stop}, "usage": {"output_tokens": 9}})
        yield sse("message_stop", {})

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    with serving(app, "fake Anthropic endpoint") as url:
        yield url


WEATHER = ToolDefinition("weather", "Weather in a city", {"type": "object"})


async def test_tool_use_streams_into_one_tool_call_then_text(endpoint: str) -> None:
    model = AnthropicChatModel("claude", "claude-test", base_url=endpoint, api_key="sk-test")
    question = (
        Message(role="system", content="Be brief."),
        Message(role="user", content="Weather?"),
    )
    first = await complete(model, ModelRequest(question, tools=(WEATHER,)))
    (call,) = first.message.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == (
        "toolu_1",
        "weather",
        {"city": "Oslo"},
    )
    assert first.finish_reason == "tool_calls"
    assert (first.usage.input_tokens, first.usage.output_tokens) == (21, 9)
    assert received[-1]["system"] == "Be brief."
    assert received[-1]["tools"][0]["input_schema"] == {"type": "object"}

    answer = await complete(
        model,
        ModelRequest(
            (
                *question,
                first.message,
                Message(role="tool", content="sunny", tool_call_id="toolu_1"),
            ),
            tools=(WEATHER,),
        ),
    )
    assert answer.message.content == "Sunny in Oslo." and answer.finish_reason == "stop"
    assert received[-1]["messages"][-1]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "sunny",
    }


async def test_a_refused_key_is_a_provider_error_with_a_hint(endpoint: str) -> None:
    model = AnthropicChatModel("claude", "claude-test", base_url=endpoint, api_key="wrong")
    with pytest.raises(ModelProviderError) as exc:
        await complete(model, ModelRequest((Message(role="user", content="hi"),)))
    assert "401" in exc.value.message and exc.value.hint

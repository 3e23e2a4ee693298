"""The OpenAI-compatible provider, through the official SDK, against a server that
streams chat completion chunks: text in pieces, tool calls whose name and arguments
come split over chunks (two at once, by index), the usage with cached tokens, and
errors before and during the stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hangar.errors import ModelProviderError
from hangar.models import Message, ModelRequest, ToolDefinition, complete
from hangar.models.openai import OpenAIChatModel
from tests.helpers import free_port, serving

received: list[dict[str, Any]] = []
asked: dict[str, int] = {}
ports: list[int] = []
BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt"}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}


def streamed(chunks: list[dict[str, Any]]) -> Response:
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return Response(body, media_type="text/event-stream")


async def chat(request: Request) -> Response:
    body = await request.json()
    received.append(body)
    assert request.client is not None
    ports.append(request.client.port)
    said = body["messages"][-1]["content"]
    asked[said] = asked.get(said, 0) + 1
    if said == "flaky" and asked[said] == 1:  # asked again, after the pause it names
        headers = {"retry-after-ms": "10"}
        return JSONResponse({"error": {"message": "busy"}}, status_code=503, headers=headers)
    if said == "refuse":
        error = {"message": "The model `gpt` does not exist", "type": "invalid_request_error"}
        return JSONResponse({"error": error}, status_code=404)
    if said == "break":  # an error reported inside the stream, after a first piece
        text = "data: " + json.dumps(chunk({"content": "par"})) + "\n\n"
        text += 'data: {"error": {"message": "overloaded mid-answer"}}\n\n'
        return Response(text, media_type="text/event-stream")
    usage = {
        "prompt_tokens": 31,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 16},
    }
    if body.get("tools"):
        first = {"index": 0, "id": "call_a", "function": {"name": "wea", "arguments": ""}}
        second = {"index": 1, "function": {"name": "time", "arguments": "{}"}}
        return streamed(
            [
                chunk({"role": "assistant", "tool_calls": [first]}),
                chunk({"tool_calls": [{"index": 0, "function": {"name": "ther"}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
                chunk({"tool_calls": [second]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}),
                chunk(finish="tool_calls"),
                {**BASE, "choices": [], "usage": usage},
            ]
        )
    pieces = [chunk({"content": word}) for word in ("Sunny ", "in ", "Oslo.")]
    return streamed([*pieces, chunk(finish="stop"), {**BASE, "choices": [], "usage": usage}])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serving(app, "fake OpenAI endpoint") as url:
        yield f"{url}/v1"


WEATHER = ToolDefinition("weather", "Weather in a city", {"type": "object"})


def asked_for(text: str, *tools: ToolDefinition) -> ModelRequest:
    return ModelRequest((Message(role="user", content=text),), tools=tools)


async def test_text_comes_in_pieces_with_the_usage_and_cached_tokens(endpoint: str) -> None:
    model = OpenAIChatModel("m", "gpt", base_url=endpoint, api_key="sk-test")
    response = await complete(model, asked_for("weather?"))
    assert response.message.content == "Sunny in Oslo."
    assert response.finish_reason == "stop"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) == (31, 7, 16)
    sent = received[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "gpt" and "tools" not in sent


async def test_tool_calls_split_over_chunks_are_put_together_by_index(endpoint: str) -> None:
    model = OpenAIChatModel("m", "gpt", base_url=endpoint)
    response = await complete(model, asked_for("weather?", WEATHER))
    calls = response.message.tool_calls
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_a", "weather", '{"city": "Oslo"}'),
        ("call_1", "time", "{}"),  # no id from the server: one of its own
    ]
    assert response.finish_reason == "tool_calls"
    assert received[-1]["tools"][0]["function"]["name"] == "weather"


async def test_an_error_answer_or_one_inside_the_stream_is_a_provider_error(
    endpoint: str,
) -> None:
    model = OpenAIChatModel("m", "gpt", base_url=endpoint)
    with pytest.raises(ModelProviderError, match=r"answered HTTP 404: .*does not exist") as found:
        await complete(model, asked_for("refuse"))
    assert found.value.details["status"] == 404
    assert "baseUrl, model id and API key" in (found.value.hint or "")
    with pytest.raises(ModelProviderError, match="failed while answering: overloaded mid-answer"):
        await complete(model, asked_for("break"))


async def test_an_unavailable_answer_is_asked_again_and_a_refusal_is_not(endpoint: str) -> None:
    """The official SDKs' retries: twice, on 408, 409, 429, 5xx and connections that
    fail, never on a client's mistake."""
    model = OpenAIChatModel("m", "gpt", base_url=endpoint)
    response = await complete(model, asked_for("flaky"))
    assert response.message.content == "Sunny in Oslo." and asked["flaky"] == 2
    before = asked.get("refuse", 0)
    with pytest.raises(ModelProviderError):
        await complete(model, asked_for("refuse"))
    assert asked["refuse"] == before + 1  # a 404: asked once


async def test_an_endpoint_nobody_answers_is_said_to_be_unreachable() -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    model = OpenAIChatModel("m", "gpt", base_url=nowhere, max_retries=1)
    with pytest.raises(ModelProviderError, match=r"cannot reach http://127\.0\.0\.1") as found:
        await complete(model, asked_for("hello"))
    assert "baseUrl" in (found.value.hint or "")


async def test_calls_one_after_another_reuse_the_connection(endpoint: str) -> None:
    """Each stream is read to its end, past ``[DONE]``: a connection left with bytes
    unread would be closed, and every call would pay for a new one."""
    model = OpenAIChatModel("m", "gpt", base_url=endpoint)
    for _ in range(3):
        await complete(model, asked_for("weather?"))
    assert len(set(ports[-3:])) == 1

"""The official `openai` client, pointed at Hangar, talks to agents as models."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.helpers import ServerThread, agent, doc, scripted_model

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
def client(server: ServerThread, api: httpx.Client) -> Iterator[openai.OpenAI]:
    api.post(
        "/v1/apply",
        json=[
            scripted_model(
                "greeter", {"text": "Hello from Hangar!", "inputTokens": 11, "outputTokens": 4}
            ),
            agent("greeter", "greeter", description="Says hello"),
            scripted_model(
                "forecaster",
                {"toolCalls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
                {"text": "Oslo: sunny, says your tool."},
            ),
            agent("forecaster", "forecaster"),
        ],
    )
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.admin_key, max_retries=0) as c:
        yield c


def test_agents_are_listed_as_models(client: openai.OpenAI) -> None:
    assert sorted(m.id for m in client.models.list()) == ["forecaster", "greeter"]
    assert client.models.retrieve("greeter").owned_by == "default"


def test_a_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="greeter", messages=[{"role": "user", "content": "Hi"}]
    )
    choice = completion.choices[0]
    assert choice.message.content == "Hello from Hangar!"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 4)


def test_a_stream_whose_last_chunk_carries_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="greeter",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Hangar!"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.total_tokens == 15
    assert all(c.usage is None for c in chunks[:-1])


def test_a_caller_side_tool_call_round_trip(client: openai.OpenAI) -> None:
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(
        model="forecaster", messages=messages, tools=[WEATHER_TOOL]
    )  # type: ignore[arg-type, list-item]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny"})
    second = client.chat.completions.create(
        model="forecaster", messages=messages, tools=[WEATHER_TOOL]
    )  # type: ignore[arg-type, list-item]
    assert second.choices[0].message.content == "Oslo: sunny, says your tool."
    assert second.choices[0].finish_reason == "stop"


def test_a_streamed_caller_side_tool_call(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="forecaster",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    calls = [tc for c in stream for tc in (c.choices[0].delta.tool_calls or []) if c.choices]
    assert [(c.index, c.function.name) for c in calls if c.function] == [(0, "get_weather")]


def test_errors_come_back_as_openai_errors(server: ServerThread, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "agent_not_found"
    with pytest.raises(openai.UnprocessableEntityError):
        client.chat.completions.create(
            model="greeter", messages=[{"role": "robot", "content": "x"}]
        )  # type: ignore[list-item, misc]
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="hgr_nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_the_openai_provider_reaches_an_openai_compatible_endpoint(
    server: ServerThread, api: httpx.Client, client: openai.OpenAI
) -> None:
    """A Model with provider `openai` whose endpoint is Hangar itself: the upstream agent
    calls a tool the downstream agent owns, which runs it and continues over real HTTP."""
    api.post(
        "/v1/apply",
        json=[
            doc("Secret", "upstream", {"data": {"key": server.admin_key}}),
            scripted_model(
                "timekeeper",
                {"toolCalls": [{"name": "current_time", "arguments": {"timezone": "UTC"}}]},
                {"text": "Checked the clock."},
            ),
            agent("timekeeper", "timekeeper"),
            {
                "apiVersion": "hangar.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "upstream"},
                "spec": {
                    "provider": "openai",
                    "model": "timekeeper",
                    "baseUrl": f"{server.url}/v1",
                    "apiKey": {"secret": "upstream", "key": "key"},
                    "pricing": {"inputPerMillion": 1.0, "outputPerMillion": 2.0},
                },
            },
            agent("proxy", "upstream", tools=[{"builtin": "current_time"}]),
        ],
    )
    run = api.post("/v1/agents/proxy/runs", json={"input": "What time is it?"}).json()
    assert run["status"] == "succeeded", run
    assert run["output"]["text"] == "Checked the clock."
    events = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
    results = [e["data"] for e in events if e["type"] == "tool_result"]
    assert [r["name"] for r in results] == ["current_time"] and not results[0]["is_error"]
    assert run["usage"]["cost"] > 0

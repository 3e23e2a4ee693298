"""A Model's limits in a process: calls past them wait in line and say why; a
provider's 429 pauses every call to the Model and the call is made again, until it has
waited as long as the Model allows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hangar.errors import ModelProviderError
from hangar.models import Message, ModelRequest, complete
from hangar.models.base import estimate_request_tokens
from hangar.models.limits import (
    Expected,
    LimitedModel,
    ModelGate,
    ModelWait,
    answered_error,
    expecting,
    reporting_waits,
    retry_after,
)
from hangar.models.messages import Finish, StreamEvent, TextDelta
from hangar.models.openai import OpenAIChatModel
from hangar.spec.model import ModelLimits
from hangar.usage import Usage
from tests.helpers import serving

REQUEST = ModelRequest((Message(role="user", content="hello there"),))


class Clock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Provider:
    """A model that answers after ``delay`` with ``usage``, or first fails with the
    errors in ``failures``; it counts the calls in flight."""

    def __init__(
        self,
        delay: float = 0.0,
        usage: Usage | None = None,
        failures: list[ModelProviderError] | None = None,
    ) -> None:
        self.delay, self.usage, self.failures = delay, usage or Usage(10, 5), list(failures or [])
        self.calls = self.in_flight = self.most_in_flight = 0

    @property
    def name(self) -> str:
        return "m"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.failures:
                raise self.failures.pop(0)
            yield TextDelta("hi")
            yield Finish("stop", self.usage)
        finally:
            self.in_flight -= 1


class Answered:
    """A provider SDK's status error, as ``answered_error`` reads it."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.message = status, message
        self.response = httpx2.Response(status, headers=headers or {})


def too_many(after: float | None) -> ModelProviderError:
    headers = {} if after is None else {"retry-after": str(after)}
    return answered_error("m", "gpt", Answered(429, "slow down", headers), "check")


async def called(model: LimitedModel, waits: list[ModelWait]) -> str:
    async def heard(wait: ModelWait) -> None:
        waits.append(wait)

    with reporting_waits(heard):
        response = await complete(model, REQUEST)
    return response.message.content or ""


async def test_calls_past_max_concurrency_wait_in_line_and_say_why() -> None:
    provider = Provider(delay=0.05)
    gate = ModelGate("m", ModelLimits(max_concurrency=2))
    model = LimitedModel(provider, gate)
    waits: list[ModelWait] = []
    answers = await asyncio.gather(*(called(model, waits) for _ in range(6)))
    assert answers == ["hi"] * 6
    assert provider.most_in_flight == 2
    assert [w.reason for w in waits] == ["max_concurrency"] * 4
    assert all(w.model == "m" and w.seconds is None for w in waits)
    assert sum(gate.waiting.values()) == 0


async def test_the_waiting_are_counted_while_they_wait() -> None:
    gate = ModelGate("m", ModelLimits(max_concurrency=1))
    model = LimitedModel(Provider(delay=0.2), gate)
    calls = [asyncio.create_task(called(model, [])) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert gate.waiting["max_concurrency"] == 2
    await asyncio.gather(*calls)
    assert gate.waiting["max_concurrency"] == 0


async def test_requests_per_minute_serve_a_burst_then_space_calls_out() -> None:
    clock = Clock()
    gate = ModelGate("m", ModelLimits(requests_per_minute=2), clock=clock, sleep=clock.sleep)
    model = LimitedModel(Provider(), gate)
    waits: list[ModelWait] = []
    for _ in range(3):
        await called(model, waits)
    assert [(w.reason, w.seconds) for w in waits] == [("requests_per_minute", 30.0)]
    assert clock.now == 30.0


async def test_tokens_per_minute_are_settled_from_the_usage_reported() -> None:
    clock = Clock()
    limits = ModelLimits(tokens_per_minute=120)
    gate = ModelGate("m", limits, clock=clock, sleep=clock.sleep)
    model = LimitedModel(Provider(usage=Usage(100, 20)), gate)  # the whole minute's
    waits: list[ModelWait] = []
    await called(model, waits)
    assert waits == []  # its input was estimated at a few tokens: it went at once
    await called(model, waits)  # the bucket is empty now: this one's estimate must refill
    # at 120 tokens a minute, two a second
    estimate = estimate_request_tokens(REQUEST)
    assert [(w.reason, w.seconds) for w in waits] == [("tokens_per_minute", estimate / 2)]


async def test_a_429_pauses_the_model_and_the_call_is_made_again() -> None:
    clock = Clock()
    gate = ModelGate("m", ModelLimits(), clock=clock, sleep=clock.sleep)
    provider = Provider(failures=[too_many(7), too_many(None)])
    waits: list[ModelWait] = []
    assert await called(LimitedModel(provider, gate), waits) == "hi"
    assert provider.calls == 3
    # as long as asked; then, when it said nothing, the backoff's second pause
    assert [(w.reason, w.seconds) for w in waits] == [("rate_limited", 7.0), ("rate_limited", 2.0)]


async def test_a_pause_holds_every_call_to_the_model_not_just_the_one_that_met_it() -> None:
    gate = ModelGate("m", ModelLimits())
    gate.pause(0.2)
    waits: list[ModelWait] = []
    assert await called(LimitedModel(Provider(), gate), waits) == "hi"
    assert [w.reason for w in waits] == ["rate_limited"]


async def test_a_429_that_does_not_end_fails_the_call_once_it_waited_its_allowance() -> None:
    clock = Clock()
    gate = ModelGate("m", ModelLimits(rate_limit_wait_seconds=1), clock=clock, sleep=clock.sleep)
    provider = Provider(failures=[too_many(0.4)] * 10)
    with pytest.raises(ModelProviderError) as raised:
        await called(LimitedModel(provider, gate), [])
    assert "still rate-limited" in raised.value.message
    assert "waiting 1 s of the 1 s" in raised.value.message
    assert "limits" in (raised.value.hint or "")
    assert provider.calls == 3  # 0.4 + 0.4 waited; a third pause would pass the second


async def test_other_errors_are_not_retried() -> None:
    failure = answered_error("m", "gpt", Answered(401, "bad key"), "check the key")
    provider = Provider(failures=[failure])
    with pytest.raises(ModelProviderError) as raised:
        await called(LimitedModel(provider, ModelGate("m", ModelLimits())), [])
    assert raised.value.details == {"status": 401} and provider.calls == 1


async def test_a_cancelled_waiter_gives_its_place_back() -> None:
    clock = Clock()
    gate = ModelGate("m", ModelLimits(requests_per_minute=1), clock=clock, sleep=clock.sleep)
    model = LimitedModel(Provider(), gate)
    await called(model, [])
    gate.sleep = asyncio.sleep  # the next one really waits: 60 s
    waiting = asyncio.create_task(called(model, []))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.sleep = clock.sleep
    waits: list[ModelWait] = []
    await called(model, waits)
    assert [(w.reason, w.seconds) for w in waits] == [("requests_per_minute", 60.0)]


async def test_a_gate_is_full_once_its_slots_are_promised_and_says_when_it_has_room() -> None:
    """Runs are claimed only while the Model has room: calls in flight, runs claimed
    whose first call has not come, and claims in flight all take a slot. A run's place
    passes to its first call (not counted twice), or comes back when it ends without
    one; each place given back with room again is told."""
    freed: list[ModelGate] = []
    gate = ModelGate("m", ModelLimits(max_concurrency=2), on_free=freed.append)
    model = LimitedModel(Provider(delay=0.05), gate)
    assert gate.limited and not gate.full(0) and not gate.full(1) and gate.full(2)
    first, second = Expected(gate), Expected(gate)
    assert gate.saturated and gate.expected == 2

    async def run(expected: Expected) -> str:
        with expecting(expected):
            return await called(model, [])

    call = asyncio.create_task(run(first))
    await asyncio.sleep(0.01)
    assert (gate.expected, gate.in_flight) == (1, 1) and gate.saturated
    with expecting(second):  # ends without calling: its place comes back
        pass
    assert (gate.expected, gate.saturated, freed) == (0, False, [gate])
    assert await call == "hi"
    assert (gate.in_flight, gate.saturated, freed) == (0, False, [gate, gate])
    assert not ModelGate("m", ModelLimits()).limited


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30
    assert retry_after({"retry-after": "86400"}) == 600.0  # at most ten minutes
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


# --- through the real openai SDK, against a server that says 429 ---------------------

answers: list[int] = []


async def chat(request: Request) -> Response:
    await request.json()
    if len(answers) < 3:  # the SDK's own two retries, then Hangar's pause
        answers.append(429)
        return JSONResponse(
            {"error": {"message": "Rate limit reached", "type": "requests"}},
            status_code=429,
            headers={"retry-after-ms": "20"},
        )
    answers.append(200)
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "gpt"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"content": "at last"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
    ]
    body = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
    return Response(body, media_type="text/event-stream")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serving(app, "the model server") as url:
        yield f"{url}/v1"


async def test_an_openai_provider_that_says_429_is_waited_out(endpoint: str) -> None:
    provider = OpenAIChatModel("m", "gpt", base_url=endpoint)
    waits: list[ModelWait] = []
    model = LimitedModel(provider, ModelGate("m", ModelLimits()))
    assert await called(model, waits) == "at last"
    assert answers == [429, 429, 429, 200]
    assert [w.reason for w in waits] == ["rate_limited"]
    assert waits[0].seconds == pytest.approx(0.02, abs=0.01)  # as the header asked

"""Stored only (no exporter), spans are made by Hangar's own light tracer instead of
the OpenTelemetry SDK: the trace a run leaves must be the same either way."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, get_current_span

from hangar.store.records import EncodedSpan
from hangar.telemetry.stored import StoredTracer, StoreSpans
from hangar.telemetry.tracing import CURRENT_NAMESPACE, Telemetry
from tests.helpers import ServerThread, agent, scripted_model

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def run_boss(home: Path, **server: Any) -> list[dict[str, Any]]:
    """A run with a tool call, an agent called as a tool and a failing tool; its trace."""
    thread = ServerThread(home, **server)
    thread.start()
    try:
        with thread.client() as api:
            api.post(
                "/v1/apply",
                json=[
                    scripted_model(
                        "boss-model",
                        {"toolCalls": [{"name": "current_time", "arguments": {}}]},
                        {"toolCalls": [{"name": "helper", "arguments": {"input": "hi"}}]},
                        {"toolCalls": [{"name": "nowhere", "arguments": {}}]},
                        {"text": "done", "inputTokens": 13, "outputTokens": 2},
                    ),
                    scripted_model("helper-model", {"text": "helped"}),
                    agent("helper", "helper-model"),
                    agent(
                        "boss",
                        "boss-model",
                        tools=[{"builtin": "current_time"}, {"agent": "helper"}],
                    ),
                ],
            ).raise_for_status()
            run = api.post(
                "/v1/agents/boss/runs",
                json={"input": "go"},
                headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"},
            ).json()
            assert run["status"] == "succeeded" and run["trace_id"] == TRACE
    finally:
        thread.stop()
    thread = ServerThread(home)
    thread.start()
    try:
        with thread.client() as api:
            return list(api.get(f"/v1/runs/{run['id']}/trace").json()["spans"])
    finally:
        thread.stop()


def shape(spans: list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Every span as what can be compared between two runs: name, kind, status, the
    parent's name, its attribute names and its events' names."""
    by_id = {s["spanId"]: s for s in spans}
    return Counter(
        (
            s["name"],
            s["kind"],
            s["status"],
            by_id[s["parentSpanId"]]["name"] if s["parentSpanId"] in by_id else s["parentSpanId"],
            tuple(sorted(s["attributes"])),
            tuple(e["name"] for e in s["events"]),
        )
        for s in spans
    )


def test_a_run_stored_only_leaves_the_trace_the_sdk_leaves(tmp_path: Path) -> None:
    light = run_boss(tmp_path / "light")
    sdk = run_boss(tmp_path / "sdk", span_processors=[SimpleSpanProcessor(InMemorySpanExporter())])
    assert shape(light) == shape(sdk)
    assert len({s["spanId"] for s in light}) == len(light)
    (boss,) = [s for s in light if s["name"] == "invoke_agent boss"]
    assert boss["attributes"]["gen_ai.usage.input_tokens"] >= 13  # the last step's and more
    assert boss["attributes"]["hangar.namespace"] == "default"
    (missing,) = [s for s in light if s["name"] == "execute_tool nowhere"]
    assert missing["status"] == "error" and missing["parentSpanId"] == boss["spanId"]
    (request,) = [s for s in light if s["name"] == "POST /v1/agents/{agent}/runs"]
    assert request["kind"] == "server" and request["parentSpanId"] == "b7ad6b7169203331"
    assert request["attributes"]["http.response.status_code"] == 200


def tracer() -> tuple[StoredTracer, deque[Any]]:
    pending: deque[Any] = deque()
    return StoredTracer(pending, CURRENT_NAMESPACE), pending


def test_an_exception_leaving_a_span_is_an_event_and_an_error() -> None:
    light, pending = tracer()
    with pytest.raises(ValueError), light.start_as_current_span("work", kind=SpanKind.CLIENT):
        raise ValueError("bad input")
    ((_, _, span),) = pending
    stored = orjson.loads(span)
    assert stored["status"] == "error" and stored["kind"] == "client"
    (event,) = stored["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "bad input"
    assert "raise ValueError" in event["attributes"]["exception.stacktrace"]


def test_spans_nest_in_the_current_context_and_carry_the_namespace() -> None:
    light, pending = tracer()
    token = CURRENT_NAMESPACE.set("team-a")
    try:
        with light.start_as_current_span("outer", attributes={"list": ["a", "b"]}) as outer:
            assert get_current_span() is outer
            with light.start_as_current_span("inner") as inner:
                inner.set_attribute("n", 1)
    finally:
        CURRENT_NAMESPACE.reset(token)
    inner_stored, outer_stored = (orjson.loads(span) for _, _, span in pending)
    assert inner_stored["parentSpanId"] == outer_stored["spanId"]
    assert inner_stored["traceId"] == outer_stored["traceId"]
    assert outer_stored["parentSpanId"] is None
    assert outer_stored["attributes"] == {"list": ["a", "b"], "hangar.namespace": "team-a"}
    assert inner_stored["attributes"] == {"n": 1, "hangar.namespace": "team-a"}
    outer.set_attribute("late", True)  # an ended span changes no more
    assert "late" not in outer.stored()["attributes"]


def test_a_caller_that_samples_its_trace_out_gets_no_spans() -> None:
    light, pending = tracer()
    with (
        Telemetry.continued(f"00-{TRACE}-b7ad6b7169203331-00"),
        light.start_as_current_span("run") as span,
    ):
        assert not span.is_recording()
        assert format(span.get_span_context().trace_id, "032x") == TRACE
    assert not pending


def test_stored_only_telemetry_uses_the_light_tracer_and_exporting_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Sink:
        async def record_spans(self, spans: list[EncodedSpan]) -> None:
            self.spans = [orjson.loads(encoded) for _, _, encoded in spans]

    sink = Sink()
    stored = Telemetry(sink, "stored")
    assert isinstance(stored.tracer, StoredTracer) and stored.provider is None
    exporting = Telemetry(sink, "stored", [SimpleSpanProcessor(InMemorySpanExporter())])
    assert not isinstance(exporting.tracer, StoredTracer) and exporting.provider is not None
    assert not Telemetry(sink, "off").enabled

    async def flushed() -> list[dict[str, Any]]:
        with stored.tracer.start_as_current_span("one"):
            stored.leaf_spans.record("store write", 1, {"db.system.name": "sqlite"})
        assert isinstance(stored.stored, StoreSpans)
        assert all(isinstance(span, tuple) for span in stored.stored.pending)
        await stored.flush()
        return sink.spans

    write, one = asyncio.run(flushed())
    assert write["name"] == "store write" and write["parentSpanId"] == one["spanId"]
    assert one["status"] == StatusCode.UNSET.name.lower()

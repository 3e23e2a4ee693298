"""Traces: a run with two tool calls and an agent called as a tool, collected three
ways at once (the OTel SDK's in-memory exporter, an OTLP/HTTP receiver, the store),
with GenAI attributes, parent links and the caller's trace continued."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hangar.store.records import SpanRecord
from hangar.store.sql import SqlStore
from tests.helpers import ServerThread, agent, free_port, scripted_model

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes each protobuf export it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        received.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def otlp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    yield receiver
    receiver.server.shutdown()


def test_a_run_is_one_trace_with_genai_spans_everywhere_it_is_sent(
    tmp_path: Path, otlp: OtlpReceiver
) -> None:
    memory = InMemorySpanExporter()
    server = ServerThread(tmp_path / "home", span_processors=[SimpleSpanProcessor(memory)])
    server.start()
    try:
        with server.client() as api:
            api.post(
                "/v1/apply",
                json=[
                    scripted_model(
                        "boss-model",
                        {
                            "toolCalls": [
                                {"name": "current_time", "arguments": {}},
                                {"name": "current_time", "arguments": {"timezone": "Asia/Tokyo"}},
                            ],
                            "inputTokens": 11,
                            "outputTokens": 7,
                        },
                        {"toolCalls": [{"name": "helper", "arguments": {"input": "hi"}}]},
                        {"text": "done", "inputTokens": 13, "outputTokens": 2},
                    ),
                    scripted_model("helper-model", {"text": "helped", "inputTokens": 3}),
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
                headers={"traceparent": TRACEPARENT},
            ).json()
            assert run["status"] == "succeeded" and run["trace_id"] == CALLER_TRACE
            served = api.get(f"/v1/runs/{run['id']}/trace").json()
            assert {s["name"] for s in served["spans"]} >= {"invoke_agent boss", "chat boss-model"}
    finally:
        server.stop()  # flushes every exporter
    stored = asyncio.run(stored_spans(tmp_path / "home" / "hangar.db"))

    spans = [s for s in memory.get_finished_spans() if s.context.trace_id == int(CALLER_TRACE, 16)]
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: Any) -> Any:
        return by_id.get(span.parent.span_id) if span.parent is not None else None

    def named(name: str) -> list[Any]:
        return [s for s in spans if s.name == name]

    # The gateway request continues the caller's span; the run hangs below it.
    (request,) = named("POST /v1/agents/{agent}/runs")
    assert format(request.parent.span_id, "016x") == "b7ad6b7169203331"
    (boss,) = named("invoke_agent boss")
    assert parent(parent(boss)) is request  # through enqueue_run boss
    assert boss.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert boss.attributes["gen_ai.agent.name"] == "boss"
    assert boss.attributes["hangar.run.id"] == run["id"]
    # Three model calls with their usage; two tool calls; the sub-agent's own run.
    chats = named("chat boss-model")
    assert [parent(c) for c in chats] == [boss, boss, boss]
    assert [c.attributes["gen_ai.usage.input_tokens"] for c in chats][0::2] == [11, 13]
    assert chats[0].attributes["gen_ai.request.model"] == "boss-model"
    assert chats[0].attributes["gen_ai.provider.name"] == "scripted"
    assert chats[0].attributes["gen_ai.operation.name"] == "chat"
    tools = named("execute_tool current_time")
    assert len(tools) == 2 and all(parent(t) is boss for t in tools)
    assert {t.attributes["gen_ai.tool.name"] for t in tools} == {"current_time"}
    assert tools[0].attributes["gen_ai.tool.type"] == "function"
    (call_helper,) = named("execute_tool helper")
    (helper,) = named("invoke_agent helper")
    assert parent(helper) is call_helper and parent(call_helper) is boss
    assert parent(named("chat helper-model")[0]) is helper
    # Store writes are spans of the run too.
    assert any(s.name == "store append_event" and parent(s) is boss for s in spans)

    # The OTLP receiver and the store got the same spans.
    otlp_ids = {s.span_id.hex() for s in otlp.spans if s.trace_id.hex() == CALLER_TRACE}
    memory_ids = {format(s.context.span_id, "016x") for s in spans}
    assert otlp_ids == memory_ids
    assert {s.span_id for s in stored} == memory_ids
    stored_boss = next(s for s in stored if s.name == "invoke_agent boss")
    assert stored_boss.attributes["gen_ai.usage.input_tokens"] == run["usage"]["input_tokens"]


async def stored_spans(database: Path) -> list[SpanRecord]:
    store = SqlStore(f"sqlite+aiosqlite:///{database}")
    try:
        return await store.list_spans("default", CALLER_TRACE)
    finally:
        await store.close()

"""Traces: one per run, from the gateway request through the run, every model call,
every tool call and the store writes, with the OpenTelemetry GenAI conventions.

Hangar keeps its own tracer (not the process-global one, so several runtimes in one
process, as in tests, stay apart). Finished spans are always kept in the store, so
``hangar runs show`` and ``GET /v1/runs/{id}/trace`` need no collector, and are also
exported over OTLP/HTTP when the standard OpenTelemetry variables ask for it
(``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_TRACES_EXPORTER=none`` turns that off). Exported, spans are the SDK's
(``TracerProvider``); stored only, they are :mod:`hangar.telemetry.stored`'s, a tenth
of the cost. ``HANGAR_TELEMETRY=off`` makes every span a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
from collections.abc import Iterator, Sequence
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracer, Span, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hangar.store.base import SpanSink
from hangar.store.records import NoWriteSpans, WriteSpans
from hangar.telemetry.genai import NAMESPACE
from hangar.telemetry.stored import LeafSpans, StoredTracer, StoreSpans

Mode = Literal["off", "stored", "otlp"]
PROPAGATOR = TraceContextTextMapPropagator()


CURRENT_NAMESPACE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hangar_namespace", default=None
)
"""The namespace whose work the current task does (set by the gateway once a request
is authenticated, by a worker for each run): every span started meanwhile carries it,
and is stored and shown with it only."""


def bind_namespace(namespace: str) -> None:
    """The rest of this task works for ``namespace``: its spans, and the current one."""
    CURRENT_NAMESPACE.set(namespace)
    span = get_current_span()
    if span.is_recording():
        span.set_attribute(NAMESPACE, namespace)


class NamespaceStamp(SpanProcessor):
    """Stamps each span, as it starts, with the namespace of the work it times."""

    def on_start(self, span: Span, parent_context: object = None) -> None:
        namespace = CURRENT_NAMESPACE.get()
        if namespace is not None:
            span.set_attribute(NAMESPACE, namespace)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def otlp_requested() -> bool:
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class Telemetry:
    """Tracing for one runtime: its tracer, where spans go, and context passing."""

    def __init__(
        self,
        store: SpanSink | None,
        mode: Mode = "stored",
        processors: Sequence[SpanProcessor] = (),
    ) -> None:
        self.mode = mode
        self.stored: StoreSpans | None = None
        self.provider: TracerProvider | None = None
        self.leaf_spans: WriteSpans = NoWriteSpans()
        if mode != "off" and store is not None:
            self.stored = StoreSpans(store)
        exported = mode == "otlp" or (mode != "off" and otlp_requested())
        self.enabled = self.stored is not None or exported or bool(processors)
        if not self.enabled:
            self.tracer: Tracer = NoOpTracer()
            return
        if self.stored is not None and not exported and not processors:
            self.tracer = StoredTracer(self.stored.pending, CURRENT_NAMESPACE)
        else:
            self.provider = TracerProvider(resource=Resource.create({"service.name": "hangar"}))
            self.provider.add_span_processor(NamespaceStamp())
            if self.stored is not None:
                self.provider.add_span_processor(self.stored)
            if exported:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )

                self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            for processor in processors:
                self.provider.add_span_processor(processor)
            self.tracer = self.provider.get_tracer("hangar")
        self.leaf_spans = LeafSpans(self.tracer)

    async def start(self) -> None:
        if self.stored is not None:
            self.stored.start()

    async def flush(self) -> None:
        """Every finished span stored (and handed to exporters) now."""
        if self.provider is not None:
            await asyncio.to_thread(self.provider.force_flush)
        if self.stored is not None:
            await self.stored.flush()

    async def stop(self) -> None:
        if self.provider is not None:
            await asyncio.to_thread(self.provider.shutdown)
        if self.stored is not None:
            await self.stored.stop()

    # --- context across the queue --------------------------------------------------

    @staticmethod
    def current_traceparent() -> str | None:
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier)
        return carrier.get("traceparent")

    @staticmethod
    @contextlib.contextmanager
    def continued(traceparent: str | None) -> Iterator[None]:
        """Make ``traceparent`` the current context (a run picked up by a worker)."""
        if not traceparent:
            yield
            return
        token = otel_context.attach(PROPAGATOR.extract({"traceparent": traceparent}))
        try:
            yield
        finally:
            otel_context.detach(token)


class _Headers(Getter[list[tuple[bytes, bytes]]]):
    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode()
        found = [v.decode("latin-1") for k, v in carrier if k.lower() == wanted]
        return found or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


HEADERS = _Headers()


def extract_from_headers(headers: list[tuple[bytes, bytes]]) -> otel_context.Context:
    return PROPAGATOR.extract(headers, getter=HEADERS)

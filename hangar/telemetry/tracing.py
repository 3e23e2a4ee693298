"""Traces: one per run, from the gateway request through the run, every model call,
every tool call and the store writes, with the OpenTelemetry GenAI conventions.

Hangar keeps its own ``TracerProvider`` (not the process-global one, so several
runtimes in one process, as in tests, stay apart). Finished spans are always kept
in the store, so ``hangar runs show`` and ``GET /v1/runs/{id}/trace`` need no
collector, and are also exported over OTLP/HTTP when the standard OpenTelemetry
variables ask for it (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_TRACES_EXPORTER=none`` turns that
off). ``HANGAR_TELEMETRY=off`` makes every span a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NoOpTracer, Span, SpanContext, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from hangar.store.base import SpanSink
from hangar.store.records import NoWriteSpans, WriteSpans, stored_span
from hangar.telemetry.genai import NAMESPACE

log = logging.getLogger("hangar.telemetry")

Mode = Literal["off", "stored", "otlp"]
FLUSH_SECONDS = 0.5
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


def _stored(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    return stored_span(
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else None,
        span.name,
        span.kind.name.lower(),
        span.start_time or 0,
        span.end_time or 0,
        span.status.status_code.name.lower(),
        _plain(span.attributes),
        [
            {
                "name": event.name,
                "timeUnixNano": event.timestamp,
                "attributes": _plain(event.attributes),
            }
            for event in span.events
        ],
    )


def _plain(attributes: Any) -> dict[str, Any]:
    if not attributes:
        return {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attributes.items()}


_Leaf = tuple[SpanContext, str, int, int, dict[str, Any], str | None]
"""A store write's span as noted on the write's path (parent, name, start, end,
attributes, namespace): a tuple, the cheapest thing to make there."""


def _stored_leaf(leaf: _Leaf) -> dict[str, Any]:
    parent, name, start_ns, end_ns, attributes, namespace = leaf
    if namespace is not None:
        attributes = {**attributes, NAMESPACE: namespace}
    return stored_span(
        f"{parent.trace_id:032x}",
        f"{random.getrandbits(64) or 1:016x}",
        f"{parent.span_id:016x}",
        name,
        "internal",
        start_ns,
        end_ns,
        "unset",
        attributes,
        [],
    )


def _stored_batch(batch: list[ReadableSpan | _Leaf]) -> list[dict[str, Any]]:
    return [_stored_leaf(span) if isinstance(span, tuple) else _stored(span) for span in batch]


class StoreSpans(SpanProcessor):
    """Keeps finished spans in the store. Spans end on any thread; they are queued as
    they are, then made into their stored form and written in batches off the event
    loop: what a span costs the run it times is its making, no more."""

    def __init__(self, store: SpanSink) -> None:
        self.store = store
        self.pending: deque[ReadableSpan | _Leaf] = deque()
        self._task: asyncio.Task[None] | None = None

    def on_end(self, span: ReadableSpan) -> None:
        self.pending.append(span)

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="hangar-spans")

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
            except Exception:
                log.exception("storing spans failed; they are dropped")

    async def flush(self) -> None:
        batch: list[ReadableSpan | _Leaf] = []
        while self.pending:
            batch.append(self.pending.popleft())
        if batch:
            await self.store.record_spans(await asyncio.to_thread(_stored_batch, batch))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class LeafSpans(WriteSpans):
    """Spans that nothing nests in and that come by the dozen per run: the store's
    writes. Through the SDK one costs about 60 µs to make and 25 µs to convert for
    storing (its attributes pass ABC checks, its sampler runs, processors are called),
    a tenth of a one-step run between them. When the store is the only place spans
    go, a write notes its parent, name and times (about 1 µs), made into the stored
    form when flushed; with any exporter or other processor they are real SDK spans,
    so every consumer sees the same trace. A write outside any trace (bootstrap, say)
    gets no span."""

    def __init__(self, tracer: Tracer, stored: StoreSpans | None, direct: bool) -> None:
        self.tracer = tracer
        self.stored = stored
        self.direct = direct and stored is not None
        self.enabled = stored is not None or not isinstance(tracer, NoOpTracer)

    def record(self, name: str, start_ns: int, attributes: dict[str, Any]) -> None:
        """A span from ``start_ns`` to now, a child of the current span."""
        parent = get_current_span().get_span_context()
        if not parent.is_valid:
            return
        if self.direct:
            assert self.stored is not None
            self.stored.pending.append(
                (parent, name, start_ns, time.time_ns(), attributes, CURRENT_NAMESPACE.get())
            )
            return
        span = self.tracer.start_span(name, attributes=attributes, start_time=start_ns)
        span.end()


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
        if mode == "off" and not processors:
            self.tracer: Tracer = NoOpTracer()
            return
        self.provider = TracerProvider(resource=Resource.create({"service.name": "hangar"}))
        self.provider.add_span_processor(NamespaceStamp())
        if mode != "off" and store is not None:
            self.stored = StoreSpans(store)
            self.provider.add_span_processor(self.stored)
        exported = mode == "otlp" or (mode != "off" and otlp_requested())
        if exported:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        for processor in processors:
            self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("hangar")
        self.leaf_spans = LeafSpans(
            self.tracer, self.stored, direct=not exported and not processors
        )

    @property
    def enabled(self) -> bool:
        return self.provider is not None

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

"""Spans kept in the store: the queue they wait in, their stored form, and the
lightweight tracer that makes them when the store is the only place spans go.

Through the OpenTelemetry SDK a span costs about 60 µs to make and 25 µs to convert
for storing: its attributes pass ABC checks, its sampler runs, its processors are
called under a lock, a ``ReadableSpan`` is copied at its end. A one-step run makes
six of them and a dozen store writes, so with telemetry stored the server spent a
quarter more CPU per run than with it off (now 1.04-1.09×, in
``bench/results/telemetry.md``). When nothing exports (no OTLP endpoint,
no extra processor), spans go nowhere but the store, and :class:`StoredTracer` makes
them as plain objects that implement the OpenTelemetry ``Span`` API: the same names,
ids, parents, attributes, events and status, the same context propagation (they are
set in the OpenTelemetry context, so ``traceparent`` headers and every
``get_current_span`` see them), for a tenth of the cost. With any exporter the SDK
makes every span, so every consumer sees the same trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.context import Context, attach, detach
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.util.types import Attributes, AttributeValue

from hangar.store.base import SpanSink
from hangar.store.records import EncodedSpan, WriteSpans, encoded_span, stored_span
from hangar.telemetry.genai import NAMESPACE

log = logging.getLogger("hangar.telemetry")

FLUSH_SECONDS = 0.5
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _plain(attributes: Any) -> dict[str, Any]:
    if not attributes:
        return {}
    return {k: list(v) if isinstance(v, tuple | list) else v for k, v in attributes.items()}


class StoredSpan(Span):
    """A span whose only destination is the store: what it records, and no more. Its
    attributes are kept as given (the store writes them as JSON, where a tuple is an
    array like a list): Hangar's own values, so no copy is made."""

    __slots__ = (
        "_context",
        "_parent",
        "_pending",
        "attributes",
        "end_ns",
        "events",
        "kind",
        "name",
        "start_ns",
        "status",
    )

    def __init__(
        self,
        pending: deque[EncodedSpan],
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_ns: int,
    ) -> None:
        self._pending = pending
        self._context = context
        self._parent = parent
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.events: list[dict[str, Any]] = []
        self.status = StatusCode.UNSET

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self.end_ns is None

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self.end_ns is None:
            self.attributes.update(attributes)

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self.end_ns is None:
            self.attributes[key] = value

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self.end_ns is None:
            self.events.append(
                {
                    "name": name,
                    "timeUnixNano": timestamp or time.time_ns(),
                    "attributes": _plain(attributes),
                }
            )

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        return None  # Hangar links nothing; the stored form has no links

    def update_name(self, name: str) -> None:
        if self.end_ns is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        code = status.status_code if isinstance(status, Status) else status
        if (
            self.end_ns is None
            and self.status is not StatusCode.OK
            and code is not StatusCode.UNSET
        ):
            self.status = code  # as the SDK: OK is final, UNSET changes nothing

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind, module = type(exception), type(exception).__module__
        self.add_event(
            "exception",
            {
                "exception.type": kind.__qualname__
                if module in (None, "builtins")
                else f"{module}.{kind.__qualname__}",
                "exception.message": str(exception),
                "exception.stacktrace": "".join(traceback.format_exception(exception)),
                "exception.escaped": str(escaped),
                **_plain(attributes),
            },
            timestamp,
        )

    def end(self, end_time: int | None = None) -> None:
        if self.end_ns is None:
            self.end_ns = end_time or time.time_ns()
            self._pending.append(encoded_span(self.stored()))

    def stored(self) -> dict[str, Any]:
        parent = self._parent
        return stored_span(
            f"{self._context.trace_id:032x}",
            f"{self._context.span_id:016x}",
            f"{parent.span_id:016x}" if parent is not None else None,
            self.name,
            self.kind.name.lower(),
            self.start_ns,
            self.end_ns or self.start_ns,
            self.status.name.lower(),
            self.attributes,
            self.events,
        )


class StoredTracer(Tracer):
    """Makes :class:`StoredSpan` s, queued for the store as they end. Sampling is the
    SDK's default (parent-based, always on): a caller's trace that it marked unsampled
    is recorded nowhere, a new trace always is."""

    def __init__(
        self, pending: deque[EncodedSpan], namespace: contextvars.ContextVar[str | None]
    ) -> None:
        self.pending = pending
        self.namespace = namespace
        """The context variable naming the namespace a span is stamped with."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent: SpanContext | None = get_current_span(context).get_span_context()
        assert parent is not None
        span_id = random.getrandbits(64) or 1
        if not parent.is_valid:
            parent = None
            trace_id = random.getrandbits(128) or 1
        elif not parent.trace_flags.sampled:
            return NonRecordingSpan(
                SpanContext(parent.trace_id, span_id, False, parent.trace_flags)
            )
        else:
            trace_id = parent.trace_id
        return StoredSpan(
            self.pending,
            name,
            SpanContext(trace_id, span_id, False, SAMPLED),
            parent,
            kind,
            self._stamped(attributes),
            start_time or time.time_ns(),
        )

    def start_as_current_span(  # type: ignore[override]  # a context manager, as the API's
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _Current:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return _Current(span, end_on_exit, record_exception, set_status_on_exception)

    def _stamped(self, attributes: Attributes) -> dict[str, Any]:
        """A span's own copy of ``attributes``, with the namespace its work is for."""
        stamped = dict(attributes) if attributes else {}
        namespace = self.namespace.get()
        if namespace is not None:
            stamped[NAMESPACE] = namespace
        return stamped

    def leaf(self, name: str, start_ns: int, attributes: dict[str, Any]) -> None:
        """A span from ``start_ns`` to now, a child of the current span, that nothing
        nests in: encoded at once, without a span object (a store write's)."""
        parent = get_current_span().get_span_context()
        if not parent.is_valid or not parent.trace_flags.sampled:
            return
        self.pending.append(
            encoded_span(
                stored_span(
                    f"{parent.trace_id:032x}",
                    f"{random.getrandbits(64) or 1:016x}",
                    f"{parent.span_id:016x}",
                    name,
                    "internal",
                    start_ns,
                    time.time_ns(),
                    "unset",
                    self._stamped(attributes),
                    [],
                )
            )
        )


class _Current:
    """A span made current for a ``with`` block, as the API's ``use_span`` does it (an
    exception leaving the block is recorded on it and sets its status), in one object
    instead of two nested generators: spans are started a dozen times a run."""

    __slots__ = ("end_on_exit", "record_exception", "set_status", "span", "token")

    def __init__(
        self, span: Span, end_on_exit: bool, record_exception: bool, set_status: bool
    ) -> None:
        self.span = span
        self.end_on_exit = end_on_exit
        self.record_exception = record_exception
        self.set_status = set_status
        self.token: object = None

    def __enter__(self) -> Span:
        self.token = attach(set_span_in_context(self.span))
        return self.span

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        detach(self.token)  # type: ignore[arg-type]  # the token attach gave
        span = self.span
        if isinstance(exc, Exception) and span.is_recording():  # not a cancellation
            if self.record_exception:
                span.record_exception(exc)
            if self.set_status:
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if self.end_on_exit:
            span.end()


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


class StoreSpans(SpanProcessor):
    """Keeps finished spans in the store. Spans end on any thread; each is encoded as
    it ends (``EncodedSpan``: nothing for the garbage collector to follow while it
    waits) and written in batches every ``FLUSH_SECONDS``. It is the SDK's processor
    when spans are exported too, and the queue :class:`StoredTracer` ends its spans
    into when they are not."""

    def __init__(self, store: SpanSink) -> None:
        self.store = store
        self.pending: deque[EncodedSpan] = deque()
        self._task: asyncio.Task[None] | None = None

    def on_end(self, span: ReadableSpan) -> None:
        self.pending.append(encoded_span(_stored(span)))

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
        batch: list[EncodedSpan] = []
        while self.pending:
            batch.append(self.pending.popleft())
        if batch:
            await self.store.record_spans(batch)

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
    writes, each noted as it ends (a span from its start to now, a child of the
    current span) through the runtime's tracer: encoded at once when only the store
    keeps spans, an SDK span otherwise. A write outside any trace (bootstrap, say)
    gets no span."""

    enabled = True

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def record(self, name: str, start_ns: int, attributes: dict[str, Any]) -> None:
        if isinstance(self.tracer, StoredTracer):
            self.tracer.leaf(name, start_ns, attributes)
        elif get_current_span().get_span_context().is_valid:
            self.tracer.start_span(name, attributes=attributes, start_time=start_ns).end()

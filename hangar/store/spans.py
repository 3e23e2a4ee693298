"""Trace spans in SQL, a row per trace and namespace per flush, written on the driver."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import orjson
import sqlalchemy as sa

from hangar.store import tables
from hangar.store.dialect import sqlite_pragmas
from hangar.store.engine import SqlCore
from hangar.store.records import (
    SpanRecord,
)

SPAN_NAMESPACE = "hangar.namespace"
"""The span attribute naming the namespace whose work a span times."""


def span_rows(spans: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    """A row per trace and namespace: their spans of this flush as one JSON array."""
    by_trace: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for span in spans:
        namespace = span["attributes"].get(SPAN_NAMESPACE)
        by_trace.setdefault((span["traceId"], namespace), []).append(span)
    return [(trace, ns, orjson.dumps(batch).decode()) for (trace, ns), batch in by_trace.items()]


class SqlSpans(SqlCore):
    """The store's spans calls, over the core's engine."""

    async def record_spans(self, spans: list[dict[str, Any]]) -> None:
        """Spans come by the dozen per run, so they are written on the driver: through
        SQLAlchemy's execution and transaction a flush cost about 1 ms of CPU, ten times
        the insert itself. A row per trace (its spans of this flush as one JSON array),
        encoded off the event loop; on SQLite written there too, on a connection of its
        own, on PostgreSQL in one ``executemany`` on the asyncpg pool."""
        if not spans:
            return
        if self.dialect.driver_pool:
            rows = await asyncio.to_thread(span_rows, spans)
            pool = await self._driver()
            await pool.executemany(
                "INSERT INTO spans (trace_id, namespace, spans) VALUES ($1, $2, $3)", rows
            )
        elif self._sqlite_path is not None:
            async with self._write_turn:
                await asyncio.to_thread(self._write_spans_sqlite, spans)
        else:  # an in-memory database: only the engine's own connections see it
            async with self.writing() as conn:
                await conn.execute(
                    tables.spans.insert(),
                    [
                        {"trace_id": t, "namespace": ns, "spans": json.loads(b)}
                        for t, ns, b in span_rows(spans)
                    ],
                )

    def _write_spans_sqlite(self, spans: list[dict[str, Any]]) -> None:
        rows = span_rows(spans)
        with self._span_writer_lock:
            if self._span_writer is None:
                assert self._sqlite_path is not None
                writer = sqlite3.connect(
                    self._sqlite_path, timeout=30, isolation_level=None, check_same_thread=False
                )
                sqlite_pragmas(writer, None)
                self._span_writer = writer
            writer = self._span_writer
            writer.execute("BEGIN")
            try:
                writer.executemany(
                    "INSERT INTO spans (trace_id, namespace, spans) VALUES (?, ?, ?)", rows
                )
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            writer.execute("COMMIT")

    async def list_spans(self, namespace: str, trace_id: str) -> list[SpanRecord]:
        query = (
            sa.select(tables.spans.c.spans)
            .where((tables.spans.c.trace_id == trace_id) & (tables.spans.c.namespace == namespace))
            .order_by(tables.spans.c.id)
        )
        async with self.engine.connect() as conn:
            batches = (await conn.execute(query)).scalars().all()
        found = [SpanRecord.from_dict(span) for batch in batches for span in batch]
        return sorted(found, key=lambda span: span.start_ns)

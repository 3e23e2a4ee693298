"""Trace spans in SQL, a row per trace and namespace per flush, written on the driver."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from hangar.store import tables
from hangar.store.engine import SqlCore
from hangar.store.records import EncodedSpan, SpanRecord


def span_rows(spans: list[EncodedSpan]) -> list[tuple[str, str | None, str]]:
    """A row per trace and namespace: their spans of this flush as one JSON array."""
    by_trace: dict[tuple[str, str | None], list[bytes]] = {}
    for trace, namespace, encoded in spans:
        by_trace.setdefault((trace, namespace), []).append(encoded)
    return [
        (trace, ns, f"[{b','.join(batch).decode()}]") for (trace, ns), batch in by_trace.items()
    ]


def _insert_spans(conn: sqlite3.Connection, spans: list[EncodedSpan]) -> None:
    conn.executemany(
        "INSERT INTO spans (trace_id, namespace, spans) VALUES (?, ?, ?)", span_rows(spans)
    )


class SqlSpans(SqlCore):
    """The store's spans calls, over the core's engine."""

    async def record_spans(self, spans: list[EncodedSpan]) -> None:
        """Spans come by the dozen per run, so they are written on the driver: through
        SQLAlchemy's execution and transaction a flush cost about 1 ms of CPU, ten times
        the insert itself. A row per trace (its spans of this flush as one JSON array);
        on SQLite by the writer thread, on PostgreSQL in one ``executemany`` on the
        asyncpg pool."""
        if not spans:
            return
        if self.dialect.driver_pool:
            rows = span_rows(spans)
            pool = await self._driver()
            await pool.executemany(
                "INSERT INTO spans (trace_id, namespace, spans) VALUES ($1, $2, $3)", rows
            )
        else:
            await self._write(lambda conn: _insert_spans(conn, spans))

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

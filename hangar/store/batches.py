"""Batches in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from hangar.ids import now
from hangar.ids import utc as _utc
from hangar.store import tables
from hangar.store.engine import SqlCore
from hangar.store.records import (
    BatchItem,
    RunRecord,
)
from hangar.store.rows import to_run
from hangar.store.tables import (
    runs,
)


class SqlBatches(SqlCore):
    """The store's batches calls, over the core's engine."""

    async def create_batch(
        self,
        batch_id: str,
        namespace: str,
        items: Sequence[BatchItem],
        key_id: str | None = None,
    ) -> None:
        async with self.writing() as conn:
            await conn.execute(
                tables.batches.insert().values(
                    id=batch_id,
                    namespace=namespace,
                    total=len(items),
                    created_at=now(),
                    key_id=key_id,
                )
            )
            if items:
                await conn.execute(
                    tables.batch_items.insert(),
                    [
                        {
                            "batch_id": batch_id,
                            "line": item.line,
                            "custom_id": item.custom_id,
                            "run_id": item.run_id,
                            "error": item.error,
                        }
                        for item in items
                    ],
                )

    async def get_batch(
        self, namespace: str, batch_id: str, key_id: str | None = None
    ) -> tuple[datetime, list[tuple[BatchItem, RunRecord | None]]] | None:
        batches, items = tables.batches, tables.batch_items
        which = (batches.c.id == batch_id) & (batches.c.namespace == namespace)
        if key_id is not None:
            which &= batches.c.key_id == key_id
        async with self.engine.connect() as conn:
            head = (await conn.execute(sa.select(batches.c.created_at).where(which))).first()
            if head is None:
                return None
            rows = (
                (
                    await conn.execute(
                        sa.select(
                            items.c.line,
                            items.c.custom_id,
                            items.c.run_id,
                            items.c.error.label("item_error"),
                            *runs.c,
                        )
                        .select_from(items.outerjoin(runs, runs.c.id == items.c.run_id))
                        .where(items.c.batch_id == batch_id)
                        .order_by(items.c.line)
                    )
                )
                .mappings()
                .all()
            )
        found = []
        for row in rows:
            item = BatchItem(row["line"], row["custom_id"], row["run_id"], row["item_error"])
            found.append((item, to_run(row) if row["id"] is not None else None))
        return _utc(head[0]), found  # type: ignore[return-value]

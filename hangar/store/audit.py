"""The tool-call audit in SQL."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa

from hangar.ids import utc as _utc
from hangar.store import sqlite_hot as on_sqlite
from hangar.store.engine import SqlCore
from hangar.store.records import (
    ToolAudit,
)
from hangar.store.tables import (
    tool_audit,
)


class SqlAuditLog(SqlCore):
    """The store's audit calls, over the core's engine."""

    async def record_tool_call(self, entry: ToolAudit) -> None:
        """An audit line; a tool name (a model's or a client's choice) is cut to the
        column's 128 characters rather than failing the call it records."""
        if self._writer is not None:
            await self._write(lambda conn: on_sqlite.insert_audit(conn, entry))
            return
        values = dataclasses.asdict(entry) | {"tool": entry.tool[:128]}
        async with self.writing() as conn:
            await conn.execute(tool_audit.insert().values(**values))

    async def list_tool_calls(
        self,
        namespace: str,
        *,
        run_id: str | None = None,
        agent: str | None = None,
        limit: int = 100,
    ) -> list[ToolAudit]:
        query = sa.select(tool_audit).where(tool_audit.c.namespace == namespace)
        if run_id is not None:
            query = query.where(tool_audit.c.run_id == run_id)
        if agent is not None:
            query = query.where(tool_audit.c.agent == agent)
        query = query.order_by(tool_audit.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        fields = [f.name for f in dataclasses.fields(ToolAudit)]
        return [
            ToolAudit(
                **{name: row[name] for name in fields} | {"created_at": _utc(row["created_at"])}
            )
            for row in rows
        ]

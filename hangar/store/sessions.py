"""Sessions in SQL: a conversation's runs take turns."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hangar.errors import (
    SessionBusyError,
)
from hangar.ids import now
from hangar.store.engine import SqlCore
from hangar.store.records import (
    ACTIVE_STATUSES,
    RunRecord,
    SessionRecord,
)
from hangar.store.rows import delete_runs, to_run, to_session
from hangar.store.tables import (
    runs,
    sessions,
)


async def refuse_if_session_active(conn: AsyncConnection, session_id: str, doing: str) -> None:
    active = await conn.execute(
        sa.select(runs.c.id)
        .where(
            (runs.c.session_id == session_id)
            & runs.c.status.in_([status.value for status in ACTIVE_STATUSES])
        )
        .limit(1)
    )
    busy = active.scalar()
    if busy is not None:
        raise SessionBusyError(
            f"session {session_id!r} has run {busy!r} still active; cannot {doing} now",
            hint="wait for that run to end (or cancel it), then try again",
            details={"session": session_id, "run": busy},
        )


class SqlSessions(SqlCore):
    """The store's sessions calls, over the core's engine."""

    async def create_session(self, session: SessionRecord) -> None:
        async with self.writing() as conn:
            await conn.execute(
                sessions.insert().values(
                    id=session.id,
                    namespace=session.namespace,
                    agent=session.agent,
                    metadata=session.metadata,
                    created_at=session.created_at,
                    updated_at=session.updated_at,
                    key_id=session.key_id,
                )
            )

    async def get_session(self, namespace: str, session_id: str) -> SessionRecord | None:
        query = sa.select(sessions).where(
            (sessions.c.namespace == namespace) & (sessions.c.id == session_id)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else to_session(row)

    async def list_sessions(
        self, namespace: str, *, agent: str | None = None, limit: int = 50
    ) -> list[SessionRecord]:
        query = sa.select(sessions).where(sessions.c.namespace == namespace)
        if agent is not None:
            query = query.where(sessions.c.agent == agent)
        query = query.order_by(sessions.c.updated_at.desc(), sessions.c.id.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [to_session(row) for row in (await conn.execute(query)).mappings()]

    async def session_runs(self, namespace: str, session_id: str) -> list[RunRecord]:
        query = (
            sa.select(runs)
            .where((runs.c.namespace == namespace) & (runs.c.session_id == session_id))
            .order_by(runs.c.created_at, runs.c.id)
        )
        async with self.engine.connect() as conn:
            return [to_run(row) for row in (await conn.execute(query)).mappings()]

    async def delete_session(self, namespace: str, session_id: str) -> bool:
        async with self.writing() as conn:
            found = await conn.execute(
                sessions.update()  # the lock a new turn would take first
                .where((sessions.c.namespace == namespace) & (sessions.c.id == session_id))
                .values(updated_at=now())
            )
            if found.rowcount == 0:
                return False
            await refuse_if_session_active(conn, session_id, "delete it")
            turns = sa.select(runs.c.id).where(runs.c.session_id == session_id)
            await delete_runs(conn, set((await conn.execute(turns)).scalars().all()))
            await conn.execute(sessions.delete().where(sessions.c.id == session_id))
        return True

    async def set_session_summary(
        self, namespace: str, session_id: str, summary: dict[str, Any]
    ) -> None:
        async with self.writing() as conn:
            await conn.execute(
                sessions.update()
                .where((sessions.c.namespace == namespace) & (sessions.c.id == session_id))
                .values(summary=summary)
            )

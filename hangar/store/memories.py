"""End users' memories in SQL, and forgetting a user whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hangar.errors import (
    UserBusyError,
)
from hangar.ids import now
from hangar.store.engine import SqlCore
from hangar.store.records import (
    ACTIVE_STATUSES,
    MemoryChanges,
    MemoryRecord,
    RunStatus,
)
from hangar.store.rows import delete_runs, to_memory
from hangar.store.tables import (
    runs,
    sessions,
    user_memories,
)


def _users_memory(namespace: str, user: str, memory_id: str) -> sa.ColumnElement[bool]:
    """One memory, only if it is this user's: an id alone must not reach another's."""
    return (
        (user_memories.c.namespace == namespace)
        & (user_memories.c.user_id == user)
        & (user_memories.c.id == memory_id)
    )


def _reworded(
    namespace: str, user: str, memory_id: str, text: str, embedding: list[float]
) -> sa.Update:
    """A user's memory given a new wording (and its vector)."""
    return (
        user_memories.update()
        .where(_users_memory(namespace, user, memory_id))
        .values(text=text, embedding=embedding, updated_at=now())
    )


async def _memories_of(conn: AsyncConnection, namespace: str, user: str) -> list[MemoryRecord]:
    query = (
        sa.select(user_memories)
        .where((user_memories.c.namespace == namespace) & (user_memories.c.user_id == user))
        .order_by(user_memories.c.created_at, user_memories.c.id)
    )
    return [to_memory(row) for row in (await conn.execute(query)).mappings()]


def _memory_row(memory: MemoryRecord) -> dict[str, Any]:
    return {
        "id": memory.id,
        "namespace": memory.namespace,
        "user_id": memory.user,
        "text": memory.text,
        "embedding": memory.embedding,
        "run_id": memory.run_id,
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }


class SqlMemories(SqlCore):
    """The store's memories calls, over the core's engine."""

    async def add_memory(self, memory: MemoryRecord) -> None:
        async with self.writing() as conn:
            await conn.execute(user_memories.insert().values(_memory_row(memory)))

    async def list_memories(self, namespace: str, user: str) -> list[MemoryRecord]:
        async with self.engine.connect() as conn:
            return await _memories_of(conn, namespace, user)

    async def change_memories(
        self, namespace: str, user: str, change: Callable[[list[MemoryRecord]], MemoryChanges]
    ) -> MemoryChanges:
        async with self.writing() as conn:
            await self.dialect.lock_users_memories(conn, namespace, user)
            changes = change(await _memories_of(conn, namespace, user))
            for memory_id, text, embedding in changes.updated:
                await conn.execute(_reworded(namespace, user, memory_id, text, embedding))
            if changes.added:
                await conn.execute(user_memories.insert(), [_memory_row(m) for m in changes.added])
        return changes

    async def update_memory(
        self, namespace: str, user: str, memory_id: str, text: str, embedding: list[float]
    ) -> MemoryRecord | None:
        async with self.writing() as conn:
            await conn.execute(_reworded(namespace, user, memory_id, text, embedding))
            mine = _users_memory(namespace, user, memory_id)
            row = (await conn.execute(sa.select(user_memories).where(mine))).mappings().first()
        return None if row is None else to_memory(row)

    async def delete_memory(self, namespace: str, user: str, memory_id: str) -> bool:
        async with self.writing() as conn:
            done = await conn.execute(
                user_memories.delete().where(_users_memory(namespace, user, memory_id))
            )
        return bool(done.rowcount)

    async def forget_user(self, namespace: str, user: str) -> dict[str, int]:
        theirs = (runs.c.namespace == namespace) & (runs.c.user_id == user)
        async with self.writing() as conn:
            rows = (
                await conn.execute(
                    sa.select(runs.c.id, runs.c.status, runs.c.session_id).where(theirs)
                )
            ).all()
            busy = [row.id for row in rows if RunStatus(row.status) in ACTIVE_STATUSES]
            if busy:
                raise UserBusyError(
                    f"user {user!r} has run {busy[0]!r} still active; forgetting them now "
                    "would leave it writing",
                    hint="cancel the run (hangar runs cancel) or wait for it, then retry",
                    details={"user": user, "runs": busy},
                )
            spoken = {row.session_id for row in rows if row.session_id is not None}
            doomed = {row.id for row in rows}
            if spoken:  # whole conversations: the other turns hold what they said too
                turns = sa.select(runs.c.id).where(runs.c.session_id.in_(spoken))
                doomed |= set((await conn.execute(turns)).scalars().all())
            counts = await delete_runs(conn, doomed)
            if spoken:
                await conn.execute(sessions.delete().where(sessions.c.id.in_(spoken)))
            forgotten = await conn.execute(
                user_memories.delete().where(
                    (user_memories.c.namespace == namespace) & (user_memories.c.user_id == user)
                )
            )
        return {**counts, "sessions": len(spoken), "memories": forgotten.rowcount}

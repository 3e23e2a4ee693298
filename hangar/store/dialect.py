"""What differs between SQLite and PostgreSQL, in one place: a ``Dialect`` per database.

The store's concerns ask their dialect, never the database's name: the engine's
options, how to insert unless present, how to
make one user's memory changes take turns, whether notices and the driver's own pool
(PostgreSQL's fast path for the hottest calls) exist. The queue's statements differ
too: each database has its own file of them (``queries/queue.<database>.sql``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from hangar.config import state_file
from hangar.store.tables import user_memories

IDLE_PING_SECONDS = 5.0
"""A pooled connection idle this long is pinged before use (the database may have
restarted meanwhile); a busy one is not. SQLAlchemy's ``pool_pre_ping`` pings on every
checkout: one more round trip for every store call, a fifth of the dispatch rate."""


@dataclass(frozen=True)
class Dialect:
    name: str
    """SQLAlchemy's backend name: ``sqlite`` or ``postgresql``."""
    shared: bool
    """A server many processes and machines share: it has notices (LISTEN/NOTIFY),
    advisory locks, row locks that claimers skip, and the driver's own pool for the
    hot path. SQLite is one file on one machine, one writer at a time."""

    @property
    def driver_pool(self) -> bool:
        """Whether the hottest calls (the claim, a run's events and end, spans) go to the
        driver's own pool, one statement each (asyncpg on PostgreSQL)."""
        return self.shared

    def insert_unless_present(self, table: sa.Table) -> Any:
        """``INSERT … ON CONFLICT DO NOTHING`` for the table."""
        insert = pg_insert if self.shared else sqlite_insert
        return insert(table).on_conflict_do_nothing()

    async def lock_migrations(self, conn: AsyncConnection) -> None:
        """Make processes that start together migrate one at a time (the others then
        find nothing left to do; without it, four processes deadlocked). SQLite's one
        writer does it already."""
        if self.shared:
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(7242364752)"))

    async def lock_users_memories(self, conn: AsyncConnection, namespace: str, user: str) -> None:
        """Make transactions changing one user's memories take turns, from before they
        read: an advisory lock per schema, namespace and user on PostgreSQL; SQLite's one
        write lock, taken before reading (not upgraded to after)."""
        if self.shared:
            await conn.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock("
                    "hashtext('hangar memories ' || current_schema() || :user))"
                ),
                {"user": f"/{namespace}/{user}"},
            )
        else:
            await conn.execute(
                user_memories.update().where(sa.false()).values(id=user_memories.c.id)
            )

    def engine(self, url: str, schema: str | None, echo: bool) -> AsyncEngine:
        """The SQLAlchemy engine, set up for this database: WAL, a busy timeout and a
        0600 file on SQLite; the schema's search path, a pool, and pings only for
        connections idle a while on PostgreSQL."""
        connect_args: dict[str, Any] = {}
        kwargs: dict[str, Any] = {}
        if self.shared:
            if schema:
                connect_args["server_settings"] = {"search_path": schema}
            kwargs.update(pool_size=10, max_overflow=10)
        else:
            connect_args["timeout"] = 30
            path = sqlite_path(url)
            if path is not None:
                state_file(Path(path))
        engine = create_async_engine(url, echo=echo, connect_args=connect_args, **kwargs)
        if self.shared:
            event.listen(engine.sync_engine, "checkin", _note_checkin)
            event.listen(engine.sync_engine, "checkout", _ping_if_idle)
        else:
            event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine


SQLITE = Dialect("sqlite", shared=False)
POSTGRESQL = Dialect("postgresql", shared=True)


def dialect_of(url: str) -> Dialect:
    name = sa.engine.make_url(url).get_backend_name()
    return POSTGRESQL if name == "postgresql" else SQLITE


def sqlite_path(url: str) -> str | None:
    """The SQLite file a URL names (None: in memory, or not SQLite)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    path = parsed.database
    return path if path and path != ":memory:" else None


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if time.monotonic() - record.info.get("idle_since", 0.0) < IDLE_PING_SECONDS:
        return
    try:
        dbapi_connection.ping()
    except Exception:
        raise sa.exc.DisconnectionError("the pooled connection is dead; taking a new one") from None

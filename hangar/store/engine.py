"""The SQL store's core: the engine for SQLite or PostgreSQL, the driver's own pool for
the hot path, migrations, notices, and the wrapper that runs every store call whole."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hangar.errors import ConfigurationError, StoreError
from hangar.store import dialect as dialects
from hangar.store.dialect import dialect_of, sqlite_path, sqlite_pragmas
from hangar.store.notices import Announcer, listen_postgres
from hangar.store.postgres import driver_dsn
from hangar.store.records import (
    Notice,
    NoWriteSpans,
    WriteSpans,
)
from hangar.store.sqlite_thread import SqliteThread

if TYPE_CHECKING:  # asyncpg is imported when PostgreSQL's pool opens, not before
    import sqlite3

    import asyncpg
    from asyncpg import Pool, Record

MIGRATIONS = Path(__file__).parent / "migrations"


T = TypeVar("T")


async def _keep_session(connection: asyncpg.Connection[Record]) -> None:
    return None


P = ParamSpec("P")


R = TypeVar("R")


def _uninterrupted(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Run a store call to its end even when its caller is cancelled, then pass the
    cancellation on. SQLAlchemy's asyncio adapters answer a cancellation that lands
    mid-statement by tearing the connection down, and the cancellation itself can be
    lost on the way (seen: 4 in 10 cancels landing in an aiosqlite write never reached
    the run's task): a cancelled run then went on as if nothing had happened."""

    operation = method.__name__
    traced = operation in TRACED

    name = f"store {operation}"

    @functools.wraps(method)
    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        store: Any = args[0]
        spans: WriteSpans = store.spans
        started = time.time_ns() if traced and spans.enabled else 0
        task = asyncio.ensure_future(method(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task  # statements are short; the caller's cancel waits for this one
            raise
        finally:
            if started:
                spans.record(name, started, store.span_attributes)

    return call


TRACED = frozenset(
    {
        "create_api_key",
        "apply_resource",
        "delete_resource",
        "create_run",
        "claim_run",
        "renew_leases",
        "finish_run",
        "finish_and_claim",
        "request_cancel",
        "park_run",
        "requeue_run",
        "append_event",
        "record_tool_call",
        "record_usage",
        "reserve_budget",
        "settle_budget",
        "release_budget_holds",
        "create_batch",
    }
)
"""The store calls that get a span: the writes. Reads are many and cheap (and writing
spans must not make more spans)."""


LONG_LIVED = frozenset({"listen"})
"""Store calls that run until cancelled: they must not be shielded from it."""


def _store_calls_run_whole(cls: type[T]) -> type[T]:
    """Wrap every public store call of ``cls`` and the concerns it is composed of."""
    calls: dict[str, object] = {}
    for part in reversed(cls.__mro__):
        calls.update(vars(part))
    for name, value in calls.items():
        if (
            inspect.iscoroutinefunction(value)
            and not name.startswith("_")
            and name not in LONG_LIVED
        ):
            setattr(cls, name, _uninterrupted(value))
    return cls


def _set_up_sqlite(connection: sqlite3.Connection) -> None:
    sqlite_pragmas(connection, None)


DRIVER_POOL_SIZE = 8
"""Connections of the driver's own pool (PostgreSQL), beside SQLAlchemy's."""


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class SqlCore:
    """What every concern of the SQL store works over: the engine, the dialect, the driver's
    pool on PostgreSQL, the notices; each concern is a class over this one."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = url
        self.schema = schema
        self._driver_pool: Pool[Record] | None = None
        self._driver_pool_lock = asyncio.Lock()
        self._write_turn = asyncio.Lock()
        """SQLAlchemy's writers on SQLite in this process, one at a time (``writing``)."""
        self._cached: dict[tuple[str, str, str], tuple[float, Any]] = {}
        """Resources the hot path reads (a run's Model, a namespace's Budgets)."""
        self._queue_watchers: list[Callable[[str | None], None]] = []
        """Told of each change the queue's fair choice depends on (``watch_queue``)."""
        self.spans: WriteSpans = NoWriteSpans()
        """A span for each write; set by the runtime's telemetry."""
        self.span_attributes = {"db.system.name": sa.engine.make_url(url).get_backend_name()}
        self.dialect = dialect_of(url)
        self._writer: SqliteThread | None = None
        """SQLite's writer thread: the hot path's writes, committed together."""
        self._reader: SqliteThread | None = None
        """SQLite's reader thread: the hot path's reads."""
        if not self.dialect.shared:
            path = sqlite_path(url)
            if path is None:
                raise ConfigurationError(
                    f"the store {url!r} is SQLite in memory, which only one connection sees",
                    hint="give the database a file: sqlite+aiosqlite:///PATH/hangar.db",
                )
            self._writer = SqliteThread(path, _set_up_sqlite)
            self._reader = SqliteThread(path, _set_up_sqlite, writes=False)
        self._announcer = Announcer(self._driver) if self.dialect.shared else None
        """Announces stored events to other processes (PostgreSQL)."""
        self.engine: AsyncEngine = self.dialect.engine(url, schema, echo)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction through SQLAlchemy. On SQLite, one at a time in this
        process, and in turn with the writer thread (paused meanwhile): SQLite has one
        writer, and connections contending for it wait in its busy handler, which sleeps
        (1 ms, growing to 100 ms) and wakes to find the lock taken again. Under a
        thousand runs at once, writers spent most of their time asleep while the lock
        sat free; taking turns here, each waits only as long as the one before it takes.
        (Processes sharing the file still meet in the busy handler.) Nothing inside
        may wait on the writer thread: it is paused."""
        if self._writer is None:
            async with self.engine.begin() as conn:
                yield conn
        else:
            async with self._write_turn, self._writer.paused(), self.engine.begin() as conn:
                yield conn

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on SQLite's writer thread, in the next group commit."""
        assert self._writer is not None, "only SQLite has a writer thread"
        return await self._writer.run(work)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on SQLite's reader thread."""
        assert self._reader is not None, "only SQLite has a reader thread"
        return await self._reader.run(work)

    def watch_queue(self, changed: Callable[[str | None], None]) -> None:
        """Call ``changed`` with a namespace a run was queued in, or None when anything
        the queue's fair choice depends on may have changed (a Quota applied, a notice
        of runs queued or ended by another process)."""
        self._queue_watchers.append(changed)

    def _queue_changed(self, namespace: str | None) -> None:
        for changed in self._queue_watchers:
            changed(namespace)

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to call on every start, from
        any number of processes at once (on PostgreSQL an advisory lock lets one migrate
        while the others wait, then find nothing left to do; without it, four processes
        starting together deadlocked)."""
        async with self.engine.begin() as conn:
            await self.dialect.lock_migrations(conn)
            await conn.run_sync(_upgrade)

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, sa.exc.SQLAlchemyError) as exc:
            raise StoreError(f"the database does not answer: {exc}") from exc

    async def close(self) -> None:
        if self._announcer is not None:
            await self._announcer.close()
        if self._driver_pool is not None:
            await self._driver_pool.close()
            self._driver_pool = None
        for thread in (self._writer, self._reader):
            if thread is not None:
                await asyncio.to_thread(thread.close)
        await self.engine.dispose()

    async def listen(self, on_notice: Callable[[Notice], None], *, events: bool = True) -> None:
        if not self.dialect.shared:
            return

        def noted(notice: Notice) -> None:
            if notice.kind != "event":  # a run queued elsewhere, or maybe missed ones
                self._queue_changed(notice.namespace if notice.kind == "queued" else None)
            on_notice(notice)

        await listen_postgres(self.url, self.schema, noted, events=events)

    def _announce(self, namespace: str, run_id: str, last_seq: int, types: Sequence[str]) -> None:
        """Tell other processes (PostgreSQL) that a run's events ``types`` were stored,
        the last as ``last_seq``."""
        if self._announcer is not None and types:
            self._announcer.announce(namespace, run_id, last_seq, types)

    async def _driver(self) -> Pool[Record]:
        return self._driver_pool or await self._open_driver_pool()

    async def _open_driver_pool(self) -> Pool[Record]:
        """asyncpg's own pool, for the hot path: taking a connection from SQLAlchemy's
        pool and giving it back costs more than the statement (0.45 ms of CPU)."""
        import asyncpg

        async with self._driver_pool_lock:
            if self._driver_pool is None:
                settings = {"search_path": self.schema} if self.schema else {}
                self._driver_pool = await asyncpg.create_pool(
                    driver_dsn(self.url),
                    min_size=0,
                    max_size=DRIVER_POOL_SIZE,
                    # As with SQLAlchemy's pool: a connection idle this long may have
                    # died with a database restart; it is closed, a fresh one opened.
                    max_inactive_connection_lifetime=dialects.IDLE_PING_SECONDS,
                    server_settings=settings,
                    # The statements sent here leave no session state behind (no SET,
                    # LISTEN, advisory or cursor), so a connection goes back to the pool
                    # as it is: asyncpg's default reset is a round trip per statement.
                    reset=_keep_session,
                )
        return self._driver_pool

"""SQLite's writer and reader: a thread each, owning a plain ``sqlite3`` connection; the
writer commits the work of many store calls together (group commit).

SQLite has one writer at a time. Through SQLAlchemy's asyncio adapter, every write was
a transaction of its own, and every statement in it a hop to the connection's thread
and back (a step's event cost six hops and a pool checkout): at 50 clients, a run's
writes took more CPU than its two model calls. Here a store call hands the thread a
function of a plain ``sqlite3`` connection and awaits the commit that holds it; the
thread takes whatever work has come in meanwhile, runs each piece in a savepoint of
one transaction (a piece that fails is rolled back alone and its caller gets the
error), commits once, and answers every caller in one wake-up of its event loop. Each
call is still durable before it returns.

Writes that still go through SQLAlchemy (resources, sessions, memories, budgets) take
turns with the thread: ``paused`` stops it between two commits for as long as such a
transaction lasts, so neither side meets the other in SQLite's busy handler (which
sleeps, and under load slept while the lock sat free).

The hot path's reads (a run, its events, a look at the queue) go to a reader thread
the same way, outside any transaction (each statement sees what is committed): through
SQLAlchemy a read was four or five hops.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hangar.errors import StoreError

T = TypeVar("T")

Work = Callable[[sqlite3.Connection], Any]

MAX_BATCH = 256
"""Pieces of work committed together at most: a bound on how long the first waits."""


@dataclass
class _Piece:
    work: Work
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


@dataclass
class _Pause:
    """Stop between commits until ``resume`` is set (a SQLAlchemy write's turn)."""

    paused: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    resume: threading.Event


class _Close:
    """The thread's last item: it ends after what came before."""


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.done():  # its loop is shutting down
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SqliteThread:
    """A thread that writes (``writes``) or reads a SQLite file, started with the first
    call."""

    def __init__(
        self, path: str, setup: Callable[[sqlite3.Connection], None], *, writes: bool = True
    ) -> None:
        self.path = path
        self.writes = writes
        self._setup = setup
        self._inbox: queue.SimpleQueue[_Piece | _Pause | _Close] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.commits = 0
        """Transactions committed so far (each holding one or many callers' work)."""

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the thread's connection: a writer's in its next transaction,
        answered once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._started().put(_Piece(work, future, loop))
        return await future

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """The writer stopped between two commits for as long as the block runs."""
        loop = asyncio.get_running_loop()
        pause = _Pause(loop.create_future(), loop, threading.Event())
        self._started().put(pause)
        try:
            await pause.paused
            yield
        finally:
            pause.resume.set()

    def close(self) -> None:
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put(_Close())
            thread.join()

    def _started(self) -> queue.SimpleQueue[_Piece | _Pause | _Close]:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    connection = sqlite3.connect(
                        self.path, timeout=30, isolation_level=None, check_same_thread=False
                    )
                    connection.row_factory = sqlite3.Row
                    self._setup(connection)
                    self._thread = threading.Thread(
                        target=self._serve,
                        args=(connection,),
                        name="hangar-sqlite-" + ("writer" if self.writes else "reader"),
                        daemon=True,
                    )
                    self._thread.start()
        return self._inbox

    def _serve(self, connection: sqlite3.Connection) -> None:
        pending: _Piece | _Pause | _Close | None = None
        try:
            while not isinstance(item := pending or self._inbox.get(), _Close):
                pending = None
                if isinstance(item, _Pause):
                    item.loop.call_soon_threadsafe(_settle, [(item.paused, True, None)])
                    item.resume.wait()
                    continue
                batch = [item]
                while len(batch) < MAX_BATCH:  # whatever else has come meanwhile
                    try:
                        following = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if not isinstance(following, _Piece):
                        pending = following  # a pause or the end: after this batch
                        break
                    batch.append(following)
                if self.writes:
                    self._commit(connection, batch)
                else:
                    self._read(connection, batch)
        finally:
            connection.close()

    def _read(self, connection: sqlite3.Connection, batch: list[_Piece]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        for piece in batch:
            try:
                outcomes.append((piece.future, True, piece.work(connection)))
            except Exception as error:
                outcomes.append((piece.future, False, error))
        _answer(batch, outcomes)

    def _commit(self, connection: sqlite3.Connection, batch: list[_Piece]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            connection.execute("BEGIN IMMEDIATE")
            for piece in batch:
                connection.execute("SAVEPOINT piece")
                try:
                    outcomes.append((piece.future, True, piece.work(connection)))
                except Exception as error:
                    connection.execute("ROLLBACK TO piece")
                    outcomes.append((piece.future, False, error))
                connection.execute("RELEASE piece")
            connection.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            failed = StoreError(
                f"the SQLite file {self.path} could not be written: {error}",
                hint="check the disk has room and the file is writable",
            )
            outcomes = [(piece.future, False, failed) for piece in batch]
        _answer(batch, outcomes)


def _answer(batch: list[_Piece], outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    """Answer each piece's caller, one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for piece, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(piece.loop, []).append(outcome)
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop already closed
            loop.call_soon_threadsafe(_settle, settled)

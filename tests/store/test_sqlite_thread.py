"""SQLite's writer thread: many callers' writes in one commit, each caller's failure
its own, and SQLAlchemy's writes taking turns with it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from hangar.errors import ConfigurationError
from hangar.ids import now
from hangar.store.dialect import sqlite_pragmas
from hangar.store.records import ToolAudit
from hangar.store.sql import SqlStore
from hangar.store.sqlite_thread import SqliteThread


@pytest.fixture
def writer(tmp_path: Path) -> SqliteThread:
    path = str(tmp_path / "w.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    return SqliteThread(path, lambda c: sqlite_pragmas(c, None))


def _insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return work


def _rows(writer: SqliteThread) -> list[int]:
    with sqlite3.connect(writer.path) as conn:
        return [n for (n,) in conn.execute("SELECT n FROM t ORDER BY n")]


async def test_writes_that_come_together_share_one_commit(writer: SqliteThread) -> None:
    try:
        async with writer.paused():  # the thread waits; fifty callers queue up
            calls = [asyncio.ensure_future(writer.run(_insert(n))) for n in range(50)]
            await asyncio.sleep(0.05)
            assert not any(call.done() for call in calls)
        assert await asyncio.gather(*calls) == list(range(50))
        assert writer.commits == 1
        assert _rows(writer) == list(range(50))
    finally:
        writer.close()


async def test_a_failing_write_fails_alone(writer: SqliteThread) -> None:
    try:
        async with writer.paused():
            good = asyncio.ensure_future(writer.run(_insert(1)))
            twice = asyncio.ensure_future(writer.run(_insert(1)))  # the same key again
            after = asyncio.ensure_future(writer.run(_insert(2)))
        assert await good == 1
        with pytest.raises(sqlite3.IntegrityError):
            await twice
        assert await after == 2
        assert writer.commits == 1
        assert _rows(writer) == [1, 2]
    finally:
        writer.close()


async def test_an_engine_write_and_the_writer_take_turns(tmp_path: Path) -> None:
    """A transaction through SQLAlchemy pauses the writer thread: a write handed to the
    thread meanwhile is committed after it (neither waits in SQLite's busy handler)."""
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hangar.db'}")
    await store.migrate()
    line = ToolAudit("ns", "agent", "run_1", "tool", "0" * 64, "ok", 1.0, now())
    try:
        async with store.writing() as conn:
            audit = asyncio.ensure_future(store.record_tool_call(line))
            await asyncio.sleep(0.05)
            assert not audit.done()
            await conn.execute(sa.text("SELECT 1"))
        await audit
        assert [entry.run_id for entry in await store.list_tool_calls("ns")] == ["run_1"]
    finally:
        await store.close()


def test_sqlite_in_memory_is_refused_with_the_way_out() -> None:
    with pytest.raises(ConfigurationError) as refused:
        SqlStore("sqlite+aiosqlite:///:memory:")
    assert "in memory" in refused.value.message
    assert refused.value.hint and "sqlite+aiosqlite:///" in refused.value.hint


async def test_closing_answers_the_writes_handed_over_before_it(writer: SqliteThread) -> None:
    async with writer.paused():
        calls = [asyncio.ensure_future(writer.run(_insert(n))) for n in range(3)]
        await asyncio.sleep(0)  # handed over
        closing = asyncio.ensure_future(asyncio.to_thread(writer.close))
        await asyncio.sleep(0.05)
    await closing  # the thread ended after committing them
    assert await asyncio.gather(*calls) == [0, 1, 2]
    assert _rows(writer) == [0, 1, 2]

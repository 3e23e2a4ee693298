"""Shared fixtures: real SQLite files, a fresh PostgreSQL schema per test, a real server."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from hangar.store.sql import SqlStore
from tests.helpers import ServerThread

POSTGRES_URL = os.environ.get(
    "HANGAR_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def _schema_sql(statement: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema in the real PostgreSQL, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    await _schema_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        await _schema_sql(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """The same store suite runs on a SQLite file and on the real PostgreSQL."""
    schema = None
    if request.param == "sqlite":
        s = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hangar.db'}")
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        await _schema_sql(f'CREATE SCHEMA "{schema}"')
        s = SqlStore(POSTGRES_URL, schema=schema)
    try:
        await s.migrate()
        yield s
    finally:
        await s.close()
        if schema:
            await _schema_sql(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path / "home").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server: ServerThread) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client

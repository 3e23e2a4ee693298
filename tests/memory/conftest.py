"""The knowledge index on both backends, and a place for the retrieval scores the
suite reports at its end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hangar.memory.index import KnowledgeIndex
from hangar.memory.postgres_index import PostgresKnowledgeIndex
from hangar.memory.sqlite_index import SqliteKnowledgeIndex
from tests.conftest import POSTGRES_URL, _schema_sql
from tests.helpers import ServerThread

REPORTED: list[str] = []
"""Lines for the end of the run (recall@5 of each search, per backend)."""


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_index(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[KnowledgeIndex]:
    """A knowledge index on a SQLite file (sqlite-vec, FTS5) or in a fresh PostgreSQL
    schema (pgvector, tsvector)."""
    index: KnowledgeIndex
    schema = None
    if request.param == "sqlite":
        index = SqliteKnowledgeIndex(tmp_path / "knowledge.db")
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        await _schema_sql(f'CREATE SCHEMA "{schema}"')
        index = PostgresKnowledgeIndex(POSTGRES_URL, schema)
    try:
        yield index
    finally:
        await index.close()
        if schema:
            await _schema_sql(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerThread]:
    """A real Hangar server on a SQLite home, or on the real PostgreSQL in a fresh
    schema; ``backend.schema`` names it (None on SQLite)."""
    import asyncio

    schema = None
    if request.param == "postgresql":
        schema = f"t_{uuid.uuid4().hex[:12]}"
        asyncio.run(_schema_sql(f'CREATE SCHEMA "{schema}"'))
    server = ServerThread(
        tmp_path / "home",
        database_url=POSTGRES_URL if schema else None,
        database_schema=schema,
    ).start()
    try:
        yield server
    finally:
        server.stop()
        if schema:
            asyncio.run(_schema_sql(f'DROP SCHEMA "{schema}" CASCADE'))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTED:
        terminalreporter.section("retrieval")
        for line in REPORTED:
            terminalreporter.write_line(line)

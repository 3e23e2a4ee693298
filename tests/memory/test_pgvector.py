"""The PostgreSQL the suite uses offers pgvector (scripts/install-pgvector.sh builds it
from Debian's source), with the distances the knowledge index ranks by."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_URL


async def test_pgvector_is_there_and_measures_cosine_distance(pg_schema: str) -> None:
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE EXTENSION vector SCHEMA "{pg_schema}"'))
            await conn.execute(sa.text(f'SET LOCAL search_path TO "{pg_schema}"'))
            distance = await conn.scalar(sa.text("SELECT '[1,0,0]'::vector <=> '[0,1,0]'"))
            near = await conn.scalar(sa.text("SELECT '[1,1,0]'::vector <=> '[1,0.9,0]'"))
    finally:
        await engine.dispose()
    assert distance == 1.0
    assert 0 <= near < 0.01

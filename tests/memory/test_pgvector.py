"""The PostgreSQL the suite uses offers pgvector (scripts/install-pgvector.sh builds it
from Debian's source), with the distances the knowledge index ranks by. The index
keeps the extension in ``public``, one per database, whatever Hangar's schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import POSTGRES_URL

DISTANCE = "SELECT '{a}'::public.vector OPERATOR(public.<=>) '{b}'::public.vector"


async def test_pgvector_is_there_and_measures_cosine_distance() -> None:
    engine = create_async_engine(POSTGRES_URL)
    try:
        async with engine.begin() as conn:
            offered = await conn.scalar(
                sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
            )
            assert offered == 1, "run scripts/install-pgvector.sh"
            await conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public"))
            distance = await conn.scalar(sa.text(DISTANCE.format(a="[1,0,0]", b="[0,1,0]")))
            near = await conn.scalar(sa.text(DISTANCE.format(a="[1,1,0]", b="[1,0.9,0]")))
    finally:
        await engine.dispose()
    assert distance == 1.0
    assert 0 <= near < 0.01

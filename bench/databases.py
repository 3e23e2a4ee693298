"""The benchmarks' databases: a fresh SQLite file or a fresh PostgreSQL schema per
measure, and the environment that points a `hangar` process at it."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

POSTGRES_URL = os.environ.get(
    "HANGAR_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def pg(statement: str) -> None:
    """One statement on the benchmarks' PostgreSQL, in autocommit."""
    import asyncpg  # type: ignore[import-untyped]

    from hangar.store.postgres import driver_dsn

    conn = await asyncpg.connect(driver_dsn(POSTGRES_URL))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@dataclass
class Database:
    """One database for one measure: a fresh SQLite file or a fresh PostgreSQL schema."""

    name: str
    url: str
    schema: str | None
    home: Path

    @classmethod
    def fresh(cls, name: str) -> Database:
        home = Path(tempfile.mkdtemp(prefix=f"hangar-bench-{name}-"))
        if name == "sqlite":
            return cls(name, f"sqlite+aiosqlite:///{home / 'hangar.db'}", None, home)
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        asyncio.run(pg(f'CREATE SCHEMA "{schema}"'))
        return cls(name, POSTGRES_URL, schema, home)

    def drop(self) -> None:
        if self.schema:
            asyncio.run(pg(f'DROP SCHEMA "{self.schema}" CASCADE'))

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "HANGAR_HOME": str(self.home),
            "HANGAR_DATABASE_URL": self.url,
            "HANGAR_TELEMETRY": "off",
            **extra,
        }
        if self.schema:
            env["HANGAR_DATABASE_SCHEMA"] = self.schema
        return env

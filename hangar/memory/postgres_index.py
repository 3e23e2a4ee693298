"""The knowledge index beside Hangar's PostgreSQL store: pgvector for the vectors, a
generated ``tsvector`` for the words (see ``memory/index.py``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hangar.errors import ConfigurationError
from hangar.memory.chunking import Chunk
from hangar.memory.documents import Upload
from hangar.memory.index import SEARCH_DEPTH, Hit, SourceInfo, job_tables, same_length
from hangar.memory.words import ts_query
from hangar.store.postgres import driver_dsn

if TYPE_CHECKING:  # imported when the pool opens
    from asyncpg import Pool, Record

PG_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;
CREATE TABLE IF NOT EXISTS knowledge_chunks (
    id BIGSERIAL PRIMARY KEY,
    namespace TEXT NOT NULL,
    kb TEXT NOT NULL,
    source TEXT NOT NULL,
    idx INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    digest TEXT NOT NULL,
    embedding public.vector NOT NULL,
    words tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || text)) STORED
);
CREATE INDEX IF NOT EXISTS knowledge_chunks_source ON knowledge_chunks (namespace, kb, source);
CREATE INDEX IF NOT EXISTS knowledge_chunks_words ON knowledge_chunks USING gin (words);
""" + job_tables(json="JSONB", size="BIGINT", data="BYTEA")


def _cast(dimension: int) -> str:
    """The indexed expression: the column as vectors of one dimension."""
    return f"(embedding::public.vector({dimension:d}))"


def _dimension_is(dimension: int) -> str:
    """The predicate of that dimension's partial index, word for word (the planner
    uses a partial index only for queries that state its predicate)."""
    return f"public.vector_dims(embedding) = {dimension:d}"


def _pg_vector(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


class PostgresKnowledgeIndex:
    """Chunks in Hangar's PostgreSQL (its schema, if set): pgvector for the vectors
    (cosine distance, exact), a generated ``tsvector`` with a GIN index for the words.
    Its table is its own, made on first use, beside the run store's.

    Vectors of each dimension get an HNSW index of their own (an expression index on
    the column cast to that dimension: the column itself takes any, as bases may use
    different embedders), made when a base first writes vectors of that size. Searches
    walk it with pgvector's iterative scan, so a base's filter does not starve the
    result (an HNSW search finds the nearest rows of every base, then filters)."""

    def __init__(self, url: str, schema: str | None = None) -> None:
        self.dsn = driver_dsn(url)
        self.schema = schema
        self._pool: Pool[Record] | None = None
        self._opening = asyncio.Lock()
        self._indexed: set[int] = set()

    async def _connection_pool(self) -> Pool[Record]:
        async with self._opening:
            if self._pool is None:
                import asyncpg

                path = f'"{self.schema}", public' if self.schema else "public"
                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=0,
                    max_size=4,
                    server_settings={
                        "search_path": path,
                        "hnsw.iterative_scan": "strict_order",
                        "hnsw.ef_search": str(4 * SEARCH_DEPTH),
                    },
                )
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        # Processes starting together must not race to create it.
                        await conn.execute("SELECT pg_advisory_xact_lock(7242364753)")
                        await conn.execute(PG_SCHEMA)
                except asyncpg.PostgresError as exc:
                    await pool.close()
                    raise ConfigurationError(
                        f"the knowledge index needs pgvector in PostgreSQL: {exc}",
                        hint="run scripts/install-pgvector.sh on the database server, or "
                        "CREATE EXTENSION vector as a superuser",
                    ) from exc
                self._pool = pool
        return self._pool

    async def replace_source(
        self,
        namespace: str,
        kb: str,
        source: str,
        digest: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        same_length(chunks, vectors)
        pool = await self._connection_pool()
        if vectors:
            await self._index_dimension(pool, len(vectors[0]))
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM knowledge_chunks WHERE namespace = $1 AND kb = $2 AND source = $3",
                namespace,
                kb,
                source,
            )
            await conn.executemany(
                "INSERT INTO knowledge_chunks"
                " (namespace, kb, source, idx, title, text, digest, embedding)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::public.vector)",
                [
                    (namespace, kb, source, c.index, c.title, c.text, digest, _pg_vector(v))
                    for c, v in zip(chunks, vectors, strict=True)
                ],
            )

    async def _index_dimension(self, pool: Any, dimension: int) -> None:
        if dimension in self._indexed:
            return
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7242364753)")
            await conn.execute(
                f"CREATE INDEX IF NOT EXISTS knowledge_chunks_hnsw_{dimension:d}"
                f" ON knowledge_chunks USING hnsw ({_cast(dimension)} public.vector_cosine_ops)"
                f" WHERE {_dimension_is(dimension)}"
            )
        self._indexed.add(dimension)

    async def delete_source(self, namespace: str, kb: str, source: str) -> int:
        pool = await self._connection_pool()
        done = await pool.execute(
            "DELETE FROM knowledge_chunks WHERE namespace = $1 AND kb = $2 AND source = $3",
            namespace,
            kb,
            source,
        )
        return int(done.split()[-1])

    async def analyze(self) -> None:
        pool = await self._connection_pool()
        await pool.execute("ANALYZE knowledge_chunks")

    async def delete_base(self, namespace: str, kb: str) -> int:
        pool = await self._connection_pool()
        done = await pool.execute(
            "DELETE FROM knowledge_chunks WHERE namespace = $1 AND kb = $2", namespace, kb
        )
        return int(done.split()[-1])

    async def sources(self, namespace: str, kb: str) -> list[SourceInfo]:
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT source, MIN(digest), COUNT(*) FROM knowledge_chunks"
            " WHERE namespace = $1 AND kb = $2 GROUP BY source ORDER BY source",
            namespace,
            kb,
        )
        return [SourceInfo(*row) for row in rows]

    async def save_job(
        self, namespace: str, job_id: str, body: dict[str, Any], saved: str | None = None
    ) -> bool:
        pool = await self._connection_pool()
        if saved is None:
            await pool.execute(
                "INSERT INTO ingestion_jobs (id, namespace, body) VALUES ($1, $2, $3::jsonb)"
                " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                job_id,
                namespace,
                json.dumps(body),
            )
            return True
        done = await pool.execute(
            "UPDATE ingestion_jobs SET body = $3::jsonb WHERE namespace = $1 AND id = $2"
            " AND body->>'updatedAt' = $4",
            namespace,
            job_id,
            json.dumps(body),
            saved,
        )
        return bool(done != "UPDATE 0")

    async def stale_jobs(self, before: str) -> list[tuple[str, dict[str, Any]]]:
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT namespace, body::text FROM ingestion_jobs"
            " WHERE body->>'status' = 'running' AND body->>'updatedAt' < $1",
            before,
        )
        return [(row[0], json.loads(row[1])) for row in rows]

    async def keep_uploads(self, namespace: str, job_id: str, uploads: Sequence[Upload]) -> None:
        pool = await self._connection_pool()
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO ingestion_uploads"
                " (job_id, namespace, idx, name, content_type, size, data)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (job_id, namespace, i, u.name, u.content_type, u.size, u.data)
                    for i, u in enumerate(uploads)
                ],
            )

    async def uploads(self, namespace: str, job_id: str) -> list[Upload]:
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT name, data, size, content_type FROM ingestion_uploads"
            " WHERE namespace = $1 AND job_id = $2 ORDER BY idx",
            namespace,
            job_id,
        )
        return [Upload(row[0], row[1], row[2], row[3]) for row in rows]

    async def drop_uploads(self, namespace: str, job_id: str) -> None:
        pool = await self._connection_pool()
        await pool.execute(
            "DELETE FROM ingestion_uploads WHERE namespace = $1 AND job_id = $2",
            namespace,
            job_id,
        )

    async def get_job(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        pool = await self._connection_pool()
        body = await pool.fetchval(
            "SELECT body::text FROM ingestion_jobs WHERE namespace = $1 AND id = $2",
            namespace,
            job_id,
        )
        return None if body is None else dict(json.loads(body))

    async def vector_search(
        self, namespace: str, kb: str, vector: Sequence[float], k: int
    ) -> list[Hit]:
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT id, source, idx, title, text FROM knowledge_chunks"
            f" WHERE namespace = $1 AND kb = $2 AND {_dimension_is(len(vector))}"
            f" ORDER BY {_cast(len(vector))} OPERATOR(public.<=>)"
            f" $3::public.vector({len(vector):d}) LIMIT $4",
            namespace,
            kb,
            _pg_vector(vector),
            k,
        )
        return [Hit(*row) for row in rows]

    async def text_search(self, namespace: str, kb: str, query: str, k: int) -> list[Hit]:
        words = ts_query(query)
        if words is None:
            return []
        pool = await self._connection_pool()
        rows = await pool.fetch(
            "SELECT id, source, idx, title, text FROM knowledge_chunks,"
            " to_tsquery('english', $3) AS q"
            " WHERE namespace = $1 AND kb = $2 AND words @@ q"
            " ORDER BY ts_rank_cd(words, q) DESC, id LIMIT $4",
            namespace,
            kb,
            words,
            k,
        )
        return [Hit(*row) for row in rows]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

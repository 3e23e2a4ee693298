"""The knowledge index: chunks with their vectors, searched by meaning (vectors), by
words (full text), or both fused by rank.

On PostgreSQL it is a table beside the run store's, with pgvector for the vectors
and a generated ``tsvector`` for the words. On one machine it is a SQLite file of its
own beside Hangar's (``knowledge.db``), with sqlite-vec and FTS5. Both pass the same
tests. Its own file because
ingestion writes in bulk and SQLite has one writer per file: runs must not wait
behind a hundred thousand chunks. Python's own ``sqlite3`` is often built without
extension loading (it is here), so the index opens its file with ``pysqlite3``
(a current SQLite, extensions allowed) when it is installed.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hangar.config import Settings, state_file
from hangar.errors import ConfigurationError
from hangar.memory.chunking import Chunk
from hangar.memory.documents import Upload
from hangar.memory.fusion import reciprocal_rank_fusion
from hangar.store.postgres import driver_dsn

SEARCH_DEPTH = 50
"""How many results each search hands to the fusion: deeper than what is asked for,
so that agreement further down still counts."""


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search: where it comes from (its citation) and its text."""

    chunk_id: int
    source: str
    index: int
    title: str
    text: str

    def citation(self) -> dict[str, Any]:
        return {"source": self.source, "chunk": self.index, "title": self.title}


@dataclass(frozen=True)
class SourceInfo:
    """A source as indexed: the digest of the content its chunks came from."""

    source: str
    digest: str
    chunks: int


class KnowledgeIndex(Protocol):
    async def replace_source(
        self,
        namespace: str,
        kb: str,
        source: str,
        digest: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        """Make ``chunks`` the source's chunks, in one transaction (the old ones go).
        ``digest`` identifies the content they came from: unchanged content is skipped."""
        ...

    async def delete_source(self, namespace: str, kb: str, source: str) -> int: ...
    async def analyze(self) -> None:
        """After a bulk write: refresh the planner's statistics, so searches use the
        indexes at once (PostgreSQL would otherwise scan until autovacuum runs)."""
        ...

    async def delete_base(self, namespace: str, kb: str) -> int: ...
    async def sources(self, namespace: str, kb: str) -> list[SourceInfo]: ...
    async def save_job(
        self, namespace: str, job_id: str, body: dict[str, Any], saved: str | None = None
    ) -> bool:
        """Store an ingestion job's state (a JSON object), replacing the last one; with
        ``saved``, only if the stored state is still the one saved at that time (its
        ``updatedAt``). False when it is not: another process took the job over."""
        ...

    async def get_job(self, namespace: str, job_id: str) -> dict[str, Any] | None: ...
    async def stale_jobs(self, before: str) -> list[tuple[str, dict[str, Any]]]:
        """Running jobs whose last save was before ``before`` (an ISO time): their
        processes died. (namespace, state) each."""
        ...

    async def keep_uploads(self, namespace: str, job_id: str, uploads: Sequence[Upload]) -> None:
        """Keep a job's uploaded files until it ends, for whichever process finishes it."""
        ...

    async def uploads(self, namespace: str, job_id: str) -> list[Upload]:
        """A job's uploaded files, in the order they were sent."""
        ...

    async def drop_uploads(self, namespace: str, job_id: str) -> None: ...
    async def vector_search(
        self, namespace: str, kb: str, vector: Sequence[float], k: int
    ) -> list[Hit]: ...
    async def text_search(self, namespace: str, kb: str, query: str, k: int) -> list[Hit]: ...
    async def close(self) -> None: ...


async def hybrid_search(
    index: KnowledgeIndex,
    namespace: str,
    kb: str,
    query: str,
    vector: Sequence[float],
    k: int,
) -> list[Hit]:
    """Vector and full-text search fused by reciprocal rank."""
    depth = max(k, SEARCH_DEPTH)
    by_vector, by_text = await asyncio.gather(
        index.vector_search(namespace, kb, vector, depth),
        index.text_search(namespace, kb, query, depth),
    )
    hits = {hit.chunk_id: hit for hit in (*by_vector, *by_text)}
    fused = reciprocal_rank_fusion([[h.chunk_id for h in by_vector], [h.chunk_id for h in by_text]])
    return [hits[chunk_id] for chunk_id in fused[:k]]


WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    """The distinct words a user typed, lower case, in order: letters and digits only,
    so no query syntax can slip through."""
    return list(dict.fromkeys(WORD.findall(text.lower())))


def _same_length(chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")


STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)
"""English words too common to search by (Snowball's list, as PostgreSQL's ``english``
configuration drops them): matching them costs a pass over most chunks and ranks
nothing."""


def fts_query(text: str) -> str | None:
    """A user's words as an FTS5 query that cannot be a syntax error: each word quoted,
    any of them may match (BM25 ranks the chunks with more, and rarer, ones first).
    Stop words are left out unless the query is nothing else."""
    words = _words(text)
    kept = [word for word in words if word not in STOPWORDS] or words
    return " OR ".join(f'"{word}"' for word in kept) or None


def _sqlite_module() -> Any:
    try:
        import pysqlite3.dbapi2 as module
    except ImportError:
        import sqlite3 as module
    if not hasattr(module.Connection, "enable_load_extension"):
        raise ConfigurationError(
            "this Python's sqlite3 cannot load extensions, and the vector index needs sqlite-vec",
            hint="pip install pysqlite3-binary (the 'memory' extra has it)",
        )
    return module


def _floats(vector: Sequence[float]) -> bytes:
    return struct.pack(f"{len(vector)}f", *vector)


def _job_tables(*, json: str, size: str, data: str) -> str:
    """Ingestion jobs' tables, in either database's types: a job's state (JSON), and
    the files uploaded with it, kept until it ends."""
    return f"""
CREATE TABLE IF NOT EXISTS ingestion_jobs (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    body {json} NOT NULL
);
CREATE TABLE IF NOT EXISTS ingestion_uploads (
    job_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT,
    size {size} NOT NULL,
    data {data},
    PRIMARY KEY (job_id, idx)
);
"""


SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    kb TEXT NOT NULL,
    source TEXT NOT NULL,
    idx INTEGER NOT NULL,
    title TEXT NOT NULL,
    text TEXT NOT NULL,
    digest TEXT NOT NULL,
    dimension INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks (namespace, kb, source);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    title, text, content='chunks', content_rowid='id'
);
""" + _job_tables(json="TEXT", size="INTEGER", data="BLOB")


class SqliteKnowledgeIndex:
    """One file, one connection, used from one thread at a time (calls take turns)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: Any = None

    def _connect(self) -> Any:
        if self._db is None:
            import sqlite_vec

            module = _sqlite_module()
            state_file(self.path)
            db = module.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.enable_load_extension(True)
            sqlite_vec.load(db)
            db.enable_load_extension(False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    async def _call(self, fn: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(self._connect(), *args)

        return await asyncio.to_thread(locked)

    async def replace_source(
        self,
        namespace: str,
        kb: str,
        source: str,
        digest: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        _same_length(chunks, vectors)

        def write(db: Any) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                _delete(db, namespace, kb, source)
                for chunk, vector in zip(chunks, vectors, strict=True):
                    cursor = db.execute(
                        "INSERT INTO chunks"
                        " (namespace, kb, source, idx, title, text, digest, dimension)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            namespace,
                            kb,
                            source,
                            chunk.index,
                            chunk.title,
                            chunk.text,
                            digest,
                            len(vector),
                        ),
                    )
                    db.execute(
                        "INSERT INTO chunks_fts (rowid, title, text) VALUES (?, ?, ?)",
                        (cursor.lastrowid, chunk.title, chunk.text),
                    )
                    db.execute(
                        f"INSERT INTO {_vec_table(db, len(vector))}"
                        " (chunk_id, namespace, kb, embedding) VALUES (?, ?, ?, ?)",
                        (cursor.lastrowid, namespace, kb, _floats(vector)),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._call(write)

    async def delete_source(self, namespace: str, kb: str, source: str) -> int:
        def delete(db: Any) -> int:
            db.execute("BEGIN IMMEDIATE")
            count = _delete(db, namespace, kb, source)
            db.execute("COMMIT")
            return count

        return int(await self._call(delete))

    async def analyze(self) -> None:
        def optimize(db: Any) -> None:
            db.execute("PRAGMA optimize")

        await self._call(optimize)

    async def delete_base(self, namespace: str, kb: str) -> int:
        def delete(db: Any) -> int:
            db.execute("BEGIN IMMEDIATE")
            count = _delete(db, namespace, kb, None)
            db.execute("COMMIT")
            return count

        return int(await self._call(delete))

    async def sources(self, namespace: str, kb: str) -> list[SourceInfo]:
        def read(db: Any) -> list[SourceInfo]:
            rows = db.execute(
                "SELECT source, MIN(digest), COUNT(*) FROM chunks"
                " WHERE namespace = ? AND kb = ? GROUP BY source ORDER BY source",
                (namespace, kb),
            ).fetchall()
            return [SourceInfo(*row) for row in rows]

        return list(await self._call(read))

    async def save_job(
        self, namespace: str, job_id: str, body: dict[str, Any], saved: str | None = None
    ) -> bool:
        def write(db: Any) -> bool:
            if saved is None:
                db.execute(
                    "INSERT INTO ingestion_jobs (id, namespace, body) VALUES (?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                    (job_id, namespace, json.dumps(body)),
                )
                return True
            done = db.execute(
                "UPDATE ingestion_jobs SET body = ? WHERE namespace = ? AND id = ?"
                " AND json_extract(body, '$.updatedAt') = ?",
                (json.dumps(body), namespace, job_id, saved),
            )
            return bool(done.rowcount)

        return bool(await self._call(write))

    async def stale_jobs(self, before: str) -> list[tuple[str, dict[str, Any]]]:
        def read(db: Any) -> Any:
            return db.execute(
                "SELECT namespace, body FROM ingestion_jobs"
                " WHERE json_extract(body, '$.status') = 'running'"
                " AND json_extract(body, '$.updatedAt') < ?",
                (before,),
            ).fetchall()

        return [(namespace, json.loads(body)) for namespace, body in await self._call(read)]

    async def keep_uploads(self, namespace: str, job_id: str, uploads: Sequence[Upload]) -> None:
        def write(db: Any) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "INSERT INTO ingestion_uploads"
                    " (job_id, namespace, idx, name, content_type, size, data)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (job_id, namespace, i, u.name, u.content_type, u.size, u.data)
                        for i, u in enumerate(uploads)
                    ],
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        await self._call(write)

    async def uploads(self, namespace: str, job_id: str) -> list[Upload]:
        def read(db: Any) -> Any:
            return db.execute(
                "SELECT name, data, size, content_type FROM ingestion_uploads"
                " WHERE namespace = ? AND job_id = ? ORDER BY idx",
                (namespace, job_id),
            ).fetchall()

        return [Upload(*row) for row in await self._call(read)]

    async def drop_uploads(self, namespace: str, job_id: str) -> None:
        def delete(db: Any) -> None:
            db.execute(
                "DELETE FROM ingestion_uploads WHERE namespace = ? AND job_id = ?",
                (namespace, job_id),
            )

        await self._call(delete)

    async def get_job(self, namespace: str, job_id: str) -> dict[str, Any] | None:
        def read(db: Any) -> Any:
            return db.execute(
                "SELECT body FROM ingestion_jobs WHERE namespace = ? AND id = ?",
                (namespace, job_id),
            ).fetchone()

        row = await self._call(read)
        return None if row is None else dict(json.loads(row[0]))

    async def vector_search(
        self, namespace: str, kb: str, vector: Sequence[float], k: int
    ) -> list[Hit]:
        def search(db: Any) -> list[Hit]:
            if not _has_vec_table(db, len(vector)):
                return []  # no base has vectors of this size
            rows = db.execute(
                "SELECT c.id, c.source, c.idx, c.title, c.text FROM ("
                f"  SELECT chunk_id, distance FROM {_vec_name(len(vector))}"
                "   WHERE embedding MATCH ? AND k = ? AND namespace = ? AND kb = ?"
                ") v JOIN chunks c ON c.id = v.chunk_id ORDER BY v.distance, c.id",
                (_floats(vector), k, namespace, kb),
            ).fetchall()
            return [Hit(*row) for row in rows]

        return list(await self._call(search))

    async def text_search(self, namespace: str, kb: str, query: str, k: int) -> list[Hit]:
        match = fts_query(query)
        if match is None:
            return []

        def search(db: Any) -> list[Hit]:
            # CROSS JOIN keeps the full-text index as the outer loop: left to itself
            # the planner walks the base's chunks and runs the whole MATCH once per
            # chunk (8 s instead of 30 ms at 11,000 chunks).
            rows = db.execute(
                "SELECT c.id, c.source, c.idx, c.title, c.text FROM chunks_fts"
                " CROSS JOIN chunks c ON c.id = chunks_fts.rowid"
                " WHERE chunks_fts MATCH ? AND c.namespace = ? AND c.kb = ?"
                " ORDER BY bm25(chunks_fts), c.id LIMIT ?",
                (match, namespace, kb, k),
            ).fetchall()
            return [Hit(*row) for row in rows]

        return list(await self._call(search))

    async def close(self) -> None:
        def close(db: Any) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            await self._call(close)


def _vec_name(dimension: int) -> str:
    return f"chunks_vec_{int(dimension):d}"


def _has_vec_table(db: Any, dimension: int) -> bool:
    found = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_vec_name(dimension),)
    ).fetchone()
    return found is not None


def _vec_table(db: Any, dimension: int) -> str:
    """The vectors of one dimension: a sqlite-vec ``vec0`` table (a flat index, scanned
    in C, partitioned by namespace and base so a search reads only its base's rows).
    One per dimension, made with the first such vector, as bases may use different
    embedders."""
    name = _vec_name(dimension)
    db.execute(
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {name} USING vec0("
        "chunk_id INTEGER PRIMARY KEY, namespace TEXT PARTITION KEY, kb TEXT PARTITION KEY,"
        f" embedding float[{int(dimension):d}] distance_metric=cosine)"
    )
    return name


def _delete(db: Any, namespace: str, kb: str, source: str | None) -> int:
    """Delete a source's chunks (every source's, for ``None``)."""
    where = "namespace = ? AND kb = ?" + ("" if source is None else " AND source = ?")
    params = (namespace, kb) if source is None else (namespace, kb, source)
    rows = db.execute(
        f"SELECT id, title, text, dimension FROM chunks WHERE {where}", params
    ).fetchall()
    for chunk_id, title, text, dimension in rows:
        # An external-content FTS table is told what goes; vec0 keeps its own copy.
        db.execute(
            "INSERT INTO chunks_fts (chunks_fts, rowid, title, text) VALUES ('delete', ?, ?, ?)",
            (chunk_id, title, text),
        )
        db.execute(f"DELETE FROM {_vec_name(dimension)} WHERE chunk_id = ?", (chunk_id,))
    db.execute(f"DELETE FROM chunks WHERE {where}", params)
    return len(rows)


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
""" + _job_tables(json="JSONB", size="BIGINT", data="BYTEA")


def index_for(settings: Settings) -> Callable[[], KnowledgeIndex]:
    """The index beside Hangar's store: PostgreSQL's when the store is there, else a
    SQLite file in Hangar's home. Made on first use (a process that never searches
    never opens it)."""
    url = settings.resolved_database_url
    if url.startswith("postgresql"):
        return lambda: PostgresKnowledgeIndex(url, settings.database_schema)
    return lambda: SqliteKnowledgeIndex(settings.home / "knowledge.db")


def ts_query(text: str) -> str | None:
    """A user's words as a ``to_tsquery`` argument that cannot be a syntax error: the
    words alone, any of them may match."""
    return " | ".join(_words(text)) or None


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
        self._pool: Any = None
        self._opening = asyncio.Lock()
        self._indexed: set[int] = set()

    async def _connection_pool(self) -> Any:
        async with self._opening:
            if self._pool is None:
                import asyncpg  # type: ignore[import-untyped]

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
        _same_length(chunks, vectors)
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

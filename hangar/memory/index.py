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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hangar.config import Settings
from hangar.memory.chunking import Chunk
from hangar.memory.documents import Upload
from hangar.memory.fusion import reciprocal_rank_fusion

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


class PassageIndex(Protocol):
    """Chunks with their vectors and words, per namespace, knowledge base and source."""

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
    async def vector_search(
        self, namespace: str, kb: str, vector: Sequence[float], k: int
    ) -> list[Hit]: ...
    async def text_search(self, namespace: str, kb: str, query: str, k: int) -> list[Hit]: ...
    async def close(self) -> None: ...


class IngestionJobs(Protocol):
    """Ingestion jobs' state and uploaded files, in the index's database (a job
    outlives the process that started it: another takes it over)."""

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


class KnowledgeIndex(PassageIndex, IngestionJobs, Protocol):
    """The index as one database holds it (SQLite file, or PostgreSQL)."""


async def hybrid_search(
    index: PassageIndex,
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


def same_length(chunks: Sequence[Chunk], vectors: Sequence[Sequence[float]]) -> None:
    if len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")


def job_tables(*, json: str, size: str, data: str) -> str:
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


def index_for(settings: Settings) -> Callable[[], KnowledgeIndex]:
    """The index beside Hangar's store: PostgreSQL's when the store is there, else a
    SQLite file in Hangar's home. Made on first use (a process that never searches
    never opens it)."""
    # The implementations are imported here: each needs its database's driver.
    from hangar.memory.postgres_index import PostgresKnowledgeIndex
    from hangar.memory.sqlite_index import SqliteKnowledgeIndex

    url = settings.resolved_database_url
    if url.startswith("postgresql"):
        return lambda: PostgresKnowledgeIndex(url, settings.database_schema)
    return lambda: SqliteKnowledgeIndex(settings.home / "knowledge.db")

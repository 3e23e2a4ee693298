"""The knowledge index on one machine: a SQLite file of its own (``knowledge.db``),
sqlite-vec for the vectors and FTS5 for the words (see ``memory/index.py``)."""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hangar.config import state_file
from hangar.errors import ConfigurationError
from hangar.memory.chunking import Chunk
from hangar.memory.documents import Upload
from hangar.memory.index import Hit, SourceInfo, job_tables, same_length
from hangar.memory.words import fts_query


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
""" + job_tables(json="TEXT", size="INTEGER", data="BLOB")


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
        same_length(chunks, vectors)

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

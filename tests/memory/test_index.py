"""The knowledge index, the same on SQLite (sqlite-vec, FTS5) and on PostgreSQL
(pgvector, tsvector): vector search finds by meaning, full-text search by words,
hybrid search by both; re-ingesting a source replaces only its chunks; any words a
user types are a valid query."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar.memory.chunking import Chunk, chunk_text
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import KnowledgeIndex, hybrid_search
from hangar.memory.postgres_index import PostgresKnowledgeIndex
from hangar.memory.sqlite_index import SqliteKnowledgeIndex
from hangar.memory.words import fts_query, ts_query
from tests.conftest import POSTGRES_URL

SOURCES = {
    "boats.md": "# Boats\nA sailboat is moved by the wind pushing on its sails.",
    "bread.md": "# Bread\nDough rises because yeast gives off carbon dioxide while proofing.",
    "codes.md": "# Codes\nThe error code HX-4417 means the fuel pump relay has failed.",
}
EMBEDDER = LocalEmbedder()


async def ingest(index: KnowledgeIndex, source: str, text: str, kb: str = "kb") -> None:
    chunks = chunk_text(text, markdown=True, count=EMBEDDER.count_tokens)
    vectors = await EMBEDDER.embed([c.embedding_text() for c in chunks])
    await index.replace_source("default", kb, source, f"sha-{len(text)}", chunks, vectors)


@pytest.fixture
async def index(empty_index: KnowledgeIndex) -> KnowledgeIndex:
    for source, text in SOURCES.items():
        await ingest(empty_index, source, text)
    return empty_index


async def search(index: KnowledgeIndex, query: str, how: str) -> list[str]:
    vector = (await EMBEDDER.embed([query]))[0]
    if how == "vector":
        hits = await index.vector_search("default", "kb", vector, 3)
    elif how == "text":
        hits = await index.text_search("default", "kb", query, 3)
    else:
        hits = await hybrid_search(index, "default", "kb", query, vector, 3)
    return [hit.source for hit in hits]


async def test_each_search_finds_what_it_is_good_at(index: KnowledgeIndex) -> None:
    # No word in common with the boat text: only meaning finds it.
    assert (await search(index, "how does a vessel travel using air currents", "vector"))[
        0
    ] == "boats.md"
    # A made-up code the embedder cannot know: the words find it.
    assert (await search(index, "what is HX-4417", "text"))[0] == "codes.md"
    assert (await search(index, "what is HX-4417", "hybrid"))[0] == "codes.md"
    assert (await search(index, "why does dough rise", "hybrid"))[0] == "bread.md"


async def test_reingesting_a_source_replaces_only_its_chunks(
    index: KnowledgeIndex,
) -> None:
    await ingest(index, "codes.md", "# Codes\nThe error code ZQ-9 means the door is open.")
    assert await search(index, "HX-4417", "text") == []
    assert (await search(index, "ZQ-9", "text")) == ["codes.md"]
    assert (await search(index, "yeast", "text")) == ["bread.md"]  # untouched
    assert [(s.source, s.chunks) for s in await index.sources("default", "kb")] == [
        ("boats.md", 1),
        ("bread.md", 1),
        ("codes.md", 1),
    ]
    assert (await index.sources("default", "kb"))[2].digest == "sha-51"
    assert await index.delete_source("default", "kb", "bread.md") == 1
    assert await search(index, "yeast", "text") == []
    assert await index.delete_base("default", "kb") == 2
    assert await index.sources("default", "kb") == []


async def test_ingestion_jobs_are_kept_per_namespace(index: KnowledgeIndex) -> None:
    await index.save_job("default", "ing_1", {"status": "running", "done": 1})
    await index.save_job("default", "ing_1", {"status": "succeeded", "done": 2})
    assert await index.get_job("default", "ing_1") == {"status": "succeeded", "done": 2}
    assert await index.get_job("team-b", "ing_1") is None


async def test_knowledge_bases_and_namespaces_do_not_mix(index: KnowledgeIndex) -> None:
    await ingest(index, "other.md", "Yeast is a fungus.", kb="other")
    assert await search(index, "fungus", "text") == []
    vector = (await EMBEDDER.embed(["fungus"]))[0]
    assert [h.source for h in await index.vector_search("default", "other", vector, 5)] == [
        "other.md"
    ]
    assert await index.vector_search("team-b", "kb", vector, 5) == []


async def test_any_typed_words_are_a_valid_full_text_query(index: KnowledgeIndex) -> None:
    for typed in ['sails" OR NEAR(', "AND", "*", "wind -sails", "'; DROP TABLE chunks; --"]:
        await index.text_search("default", "kb", typed, 3)  # never a syntax error
    assert fts_query("  ") is None and ts_query("  ") is None
    assert fts_query('Wind "sails" wind') == '"wind" OR "sails"'
    assert fts_query("What is the HX-4417 code?") == '"hx" OR "4417" OR "code"'  # no stop words
    assert fts_query("to be or not to be") == '"to" OR "be" OR "or" OR "not"'  # all stop words
    assert ts_query("wind's & (sails)") == "wind | s | sails"
    assert (await search(index, "wind -sails", "text"))[0] == "boats.md"


def test_a_chunk_list_and_its_vectors_must_match(tmp_path: Path) -> None:
    import asyncio

    index = SqliteKnowledgeIndex(tmp_path / "k.db")
    with pytest.raises(ValueError, match="1 chunks but 0 vectors"):
        asyncio.run(index.replace_source("default", "kb", "s", "d", [Chunk("t", (), 0)], []))


async def test_postgresql_searches_vectors_through_an_hnsw_index(pg_schema: str) -> None:
    index = PostgresKnowledgeIndex(POSTGRES_URL, pg_schema)
    try:
        await ingest(index, "boats.md", SOURCES["boats.md"])
        pool = await index._connection_pool()
        vector = (await EMBEDDER.embed(["wind"]))[0]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")  # a tiny table: force it
            plan = await conn.fetch(
                "EXPLAIN SELECT id FROM knowledge_chunks WHERE namespace = 'default'"
                " AND kb = 'kb' AND public.vector_dims(embedding) = 384 ORDER BY"
                " (embedding::public.vector(384)) OPERATOR(public.<=>) $1::public.vector(384)"
                " LIMIT 5",
                "[" + ",".join(map(str, vector)) + "]",
            )
        assert "knowledge_chunks_hnsw_384" in "\n".join(row[0] for row in plan)
        found = await index.vector_search("default", "kb", vector, 5)
        assert [h.source for h in found] == ["boats.md"]
        assert await index.vector_search("default", "kb", [1.0, 0.0], 5) == []  # no 2-d base
    finally:
        await index.close()


async def test_sqlite_keeps_vectors_in_a_vec0_table_per_dimension(tmp_path: Path) -> None:
    index = SqliteKnowledgeIndex(tmp_path / "knowledge.db")
    try:
        await ingest(index, "boats.md", SOURCES["boats.md"])
        db = index._connect()
        assert db.execute("SELECT count(*) FROM chunks_vec_384").fetchone() == (1,)
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT chunk_id FROM chunks_vec_384"
            " WHERE embedding MATCH ? AND k = 5 AND namespace = 'default' AND kb = 'kb'",
            (b"\0" * 4 * 384,),
        ).fetchall()
        assert "VIRTUAL TABLE" in str(plan)
        assert await index.vector_search("default", "kb", [1.0, 0.0], 5) == []  # no 2-d base
        assert await index.delete_source("default", "kb", "boats.md") == 1
        assert db.execute("SELECT count(*) FROM chunks_vec_384").fetchone() == (0,)
    finally:
        await index.close()

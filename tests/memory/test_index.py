"""The knowledge index, the same on SQLite (sqlite-vec, FTS5) and on PostgreSQL
(pgvector, tsvector): vector search finds by meaning, full-text search by words,
hybrid search by both; re-ingesting a source replaces only its chunks; any words a
user types are a valid query."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hangar.memory.chunking import Chunk, chunk_text
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import (
    KnowledgeIndex,
    PostgresKnowledgeIndex,
    SqliteKnowledgeIndex,
    fts_query,
    hybrid_search,
    ts_query,
)
from tests.conftest import POSTGRES_URL, _schema_sql

SOURCES = {
    "boats.md": "# Boats\nA sailboat is moved by the wind pushing on its sails.",
    "bread.md": "# Bread\nDough rises because yeast gives off carbon dioxide while proofing.",
    "codes.md": "# Codes\nThe error code HX-4417 means the fuel pump relay has failed.",
}
EMBEDDER = LocalEmbedder()


async def ingest(index: KnowledgeIndex, source: str, text: str, kb: str = "kb") -> None:
    chunks = chunk_text(text, markdown=True, count=EMBEDDER.count_tokens)
    vectors = await EMBEDDER.embed([c.embedding_text() for c in chunks])
    await index.replace_source("default", kb, source, chunks, vectors)


@pytest.fixture(params=["sqlite", "postgresql"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KnowledgeIndex]:
    index: KnowledgeIndex
    schema = None
    if request.param == "sqlite":
        index = SqliteKnowledgeIndex(tmp_path / "knowledge.db")
    else:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        await _schema_sql(f'CREATE SCHEMA "{schema}"')
        index = PostgresKnowledgeIndex(POSTGRES_URL, schema)
    for source, text in SOURCES.items():
        await ingest(index, source, text)
    try:
        yield index
    finally:
        await index.close()
        if schema:
            await _schema_sql(f'DROP SCHEMA "{schema}" CASCADE')


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
    assert await index.delete_source("default", "kb", "bread.md") == 1
    assert await search(index, "yeast", "text") == []


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
    assert ts_query("wind's & (sails)") == "wind | s | sails"
    assert (await search(index, "wind -sails", "text"))[0] == "boats.md"


def test_a_chunk_list_and_its_vectors_must_match(tmp_path: Path) -> None:
    import asyncio

    index = SqliteKnowledgeIndex(tmp_path / "k.db")
    with pytest.raises(ValueError, match="1 chunks but 0 vectors"):
        asyncio.run(index.replace_source("default", "kb", "s", [Chunk("t", (), 0)], []))

"""The knowledge index, the same on SQLite (sqlite-vec, FTS5) and on PostgreSQL
(pgvector, tsvector): vector search finds by meaning, full-text search by words,
hybrid search by both; re-ingesting a source replaces only its chunks; any words a
user types are a valid query."""

from __future__ import annotations

from pathlib import Path

import pytest

from hangar.memory.chunking import Chunk, chunk_text
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import (
    KnowledgeIndex,
    SqliteKnowledgeIndex,
    fts_query,
    hybrid_search,
    ts_query,
)

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
    assert ts_query("wind's & (sails)") == "wind | s | sails"
    assert (await search(index, "wind -sails", "text"))[0] == "boats.md"


def test_a_chunk_list_and_its_vectors_must_match(tmp_path: Path) -> None:
    import asyncio

    index = SqliteKnowledgeIndex(tmp_path / "k.db")
    with pytest.raises(ValueError, match="1 chunks but 0 vectors"):
        asyncio.run(index.replace_source("default", "kb", "s", "d", [Chunk("t", (), 0)], []))

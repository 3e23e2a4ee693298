"""Retrieval quality on a real text: the Book of Genesis (King James Version, public
domain) with questions written for it, each with the words of the passage that
answers it. Recall@5 is the share of questions with such a passage among the first
five chunks found. The suite reports it for vector, full-text and hybrid search on
both backends; hybrid must be at least as good as either alone."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from hangar.memory.chunking import Chunk, chunk_text
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import Hit, KnowledgeIndex, hybrid_search
from tests.memory.conftest import REPORTED

DATA = Path(__file__).parent / "data"
K = 5
EMBEDDER = LocalEmbedder()


@pytest.fixture(scope="module")
def corpus() -> dict[str, Any]:
    """Chunks, their vectors and the questions' vectors, embedded once for both backends."""
    text = (DATA / "genesis.md").read_text()
    chunks = chunk_text(
        text, max_tokens=200, overlap=40, markdown=True, count=EMBEDDER.count_tokens
    )
    questions = json.loads((DATA / "genesis_questions.json").read_text())
    return {
        "digest": hashlib.sha256(text.encode()).hexdigest(),
        "chunks": chunks,
        "vectors": asyncio.run(EMBEDDER.embed([c.embedding_text() for c in chunks])),
        "questions": questions,
        "question_vectors": asyncio.run(EMBEDDER.embed([q["question"] for q in questions])),
    }


def found(hits: list[Hit], evidence: str) -> bool:
    return any(evidence in hit.text for hit in hits)


def test_every_answer_is_whole_in_some_chunk(corpus: dict[str, Any]) -> None:
    chunks: list[Chunk] = corpus["chunks"]
    assert len(chunks) > 200  # a real corpus, not a handful of chunks
    for question in corpus["questions"]:
        assert any(question["evidence"] in c.text for c in chunks), question


async def test_hybrid_recall_at_5_is_at_least_that_of_each_search(
    empty_index: KnowledgeIndex, corpus: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    index = empty_index
    await index.replace_source(
        "default", "bible", "genesis.md", corpus["digest"], corpus["chunks"], corpus["vectors"]
    )
    hits = {"vector": 0, "text": 0, "hybrid": 0}
    for question, vector in zip(corpus["questions"], corpus["question_vectors"], strict=True):
        asked, evidence = question["question"], question["evidence"]
        results = {
            "vector": await index.vector_search("default", "bible", vector, K),
            "text": await index.text_search("default", "bible", asked, K),
            "hybrid": await hybrid_search(index, "default", "bible", asked, vector, K),
        }
        for how, found_hits in results.items():
            hits[how] += found(found_hits, evidence)
    total = len(corpus["questions"])
    recall = {how: n / total for how, n in hits.items()}
    backend = request.node.callspec.params["empty_index"]
    REPORTED.append(
        f"recall@{K} on Genesis ({total} questions, {backend}): "
        + ", ".join(f"{how} {value:.2f}" for how, value in recall.items())
    )
    assert recall["hybrid"] >= recall["vector"], recall
    assert recall["hybrid"] >= recall["text"], recall
    assert recall["hybrid"] >= 0.7, recall

"""The knowledge index's speed: ingestion throughput, and query latency at 10k and
100k chunks, for sqlite-vec and pgvector next to brute-force NumPy as the floor.

Ingestion. The Book of Genesis (the retrieval test's corpus) is cut into chunks and
embedded with the bundled all-MiniLM-L6-v2 once; each index then takes the same
chunks and vectors (one source per chapter), and the floor appends them to a NumPy
matrix. Chunks per second are given for indexing alone and for the whole ingestion
(embedding, which every contender shares, plus indexing).

Queries. Each index is filled to 10,000 and then 100,000 chunks: Genesis's chunks over
and over, each copy's vectors moved a little (Gaussian noise, re-normalised) so no two
rows are the same. The retrieval test's 34 questions are asked in turn of each
contender (interleaved, so machine noise falls on all alike): top 5 by vector
(sqlite-vec's ``vec0`` flat index, exact; pgvector's HNSW index, approximate, walked
with iterative scan; NumPy's matrix product, exact) and hybrid (vector and full text
fused by reciprocal rank; the floor has no full text and stays at vector). Each
vector search's top 5 is compared with NumPy's exact one: the share they agree on is
the approximate index's recall.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.databases import POSTGRES_URL, pg
from hangar.memory.chunking import Chunk, chunk_text
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import KnowledgeIndex, hybrid_search
from hangar.memory.postgres_index import PostgresKnowledgeIndex
from hangar.memory.sqlite_index import SqliteKnowledgeIndex

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DATA = ROOT / "tests" / "memory" / "data"
SIZES = (10_000, 100_000)
PER_SOURCE = 500
K = 5


class NumpyFloor:
    """Brute force: every vector in one float32 matrix, a product per query."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.matrix: np.ndarray | None = None

    def add(self, vectors: list[list[float]]) -> None:
        self.rows.append(np.asarray(vectors, dtype=np.float32))
        self.matrix = None

    def search(self, vector: list[float], k: int) -> list[int]:
        """Row numbers, in the order rows were added."""
        if self.matrix is None:
            self.matrix = np.vstack(self.rows)
        scores = self.matrix @ np.asarray(vector, dtype=np.float32)
        top = np.argpartition(-scores, k)[:k]
        return [int(i) for i in top[np.argsort(-scores[top])]]


def _jittered(vectors: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 0.05, vectors.shape).astype(np.float32)
    moved = vectors + noise
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


async def _fill(
    index: KnowledgeIndex | NumpyFloor,
    chunks: list[Chunk],
    base: np.ndarray,
    start: int,
    end: int,
) -> None:
    """Chunks ``start`` to ``end`` (counted over the repeated corpus), one source per
    ``PER_SOURCE`` chunks."""
    for first in range(start, end, PER_SOURCE):
        ids = range(first, min(first + PER_SOURCE, end))
        part = [chunks[i % len(chunks)] for i in ids]
        vectors = np.vstack([_jittered(base[i % len(chunks)][None, :], i) for i in ids])
        rows = vectors.tolist()
        if isinstance(index, NumpyFloor):
            index.add(rows)
        else:
            numbered = [Chunk(c.text, c.headings, n) for n, c in enumerate(part)]
            await index.replace_source("bench", "kb", f"part-{first}", "d", numbered, rows)


async def _run() -> dict[str, Any]:
    embedder = LocalEmbedder()
    text = (DATA / "genesis.md").read_text()
    questions = [q["question"] for q in json.loads((DATA / "genesis_questions.json").read_text())]
    chunks = chunk_text(
        text, max_tokens=200, overlap=40, markdown=True, count=embedder.count_tokens
    )
    await embedder.embed(["warm up"])
    started = time.perf_counter()
    vectors = await embedder.embed([c.embedding_text() for c in chunks])
    embed_seconds = time.perf_counter() - started
    asked = await embedder.embed(questions)
    base = np.asarray(vectors, dtype=np.float32)

    home = Path(tempfile.mkdtemp(prefix="hangar-bench-memory-"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    await pg(f'CREATE SCHEMA "{schema}"')
    indexes: dict[str, KnowledgeIndex] = {
        "sqlite-vec": SqliteKnowledgeIndex(home / "knowledge.db"),
        "pgvector": PostgresKnowledgeIndex(POSTGRES_URL, schema),
    }
    floor = NumpyFloor()
    try:
        # Ingestion: the chunks once, one source per chapter-sized slice.
        ingest: dict[str, float] = {}
        for name, index in [*indexes.items(), ("numpy", floor)]:
            began = time.perf_counter()
            await _fill(index, chunks, base, 0, len(chunks))
            ingest[name] = time.perf_counter() - began
        for index in indexes.values():
            await index.delete_base("bench", "kb")
        floor = NumpyFloor()

        queries: dict[int, dict[str, dict[str, float]]] = {}
        filled = 0
        for size in SIZES:
            for index in [*indexes.values(), floor]:
                await _fill(index, chunks, base, filled, size)
            for index in indexes.values():
                await index.analyze()  # as an ingestion job does at its end
            filled = size
            samples: dict[str, list[float]] = {
                f"{name} {how}": [] for name in indexes for how in ("vector", "hybrid")
            }
            samples["numpy vector"] = []
            agreed = {name: 0 for name in indexes}
            for _ in range(3):
                for question, vector in zip(questions, asked, strict=True):
                    exact = set(floor.search(vector, K))
                    for name, index in indexes.items():
                        began = time.perf_counter()
                        hits = await index.vector_search("bench", "kb", vector, K)
                        samples[f"{name} vector"].append(time.perf_counter() - began)
                        rows = {int(h.source.removeprefix("part-")) + h.index for h in hits}
                        agreed[name] += len(rows & exact)
                        began = time.perf_counter()
                        await hybrid_search(index, "bench", "kb", question, vector, K)
                        samples[f"{name} hybrid"].append(time.perf_counter() - began)
                    began = time.perf_counter()
                    floor.search(vector, K)
                    samples["numpy vector"].append(time.perf_counter() - began)
            queries[size] = {
                name: {"p50_ms": statistics.median(values) * 1000}
                for name, values in samples.items()
            }
            for name, count in agreed.items():
                queries[size][f"{name} vector"]["recall"] = count / (3 * len(questions) * K)
    finally:
        for index in indexes.values():
            await index.close()
        await pg(f'DROP SCHEMA "{schema}" CASCADE')
    return {
        "chunks": len(chunks),
        "embed_seconds": embed_seconds,
        "ingest_seconds": ingest,
        "queries": queries,
        "corpus_sha256": hashlib.sha256(text.encode()).hexdigest()[:12],
    }


def main() -> None:
    found = asyncio.run(_run())
    n = found["chunks"]
    embed = found["embed_seconds"]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    floor_index = found["ingest_seconds"]["numpy"]
    ingest_rows = "\n".join(
        f"| {name} | {n / seconds:,.0f} | {n / (embed + seconds):,.1f} "
        f"| {(n / (embed + seconds)) / (n / (embed + floor_index)):.3f}× |"
        for name, seconds in found["ingest_seconds"].items()
    )
    query_rows = []
    for size, measured in found["queries"].items():
        floor = measured["numpy vector"]["p50_ms"]
        for name, value in measured.items():
            p50 = value["p50_ms"]
            recall = f"{value['recall']:.3f}" if "recall" in value else ""
            query_rows.append(f"| {size:,} | {name} | {p50:.2f} | {p50 / floor:.1f}× | {recall} |")
    report = f"""# Knowledge index: ingestion and queries

{stamp}, {platform.machine()}, {os.cpu_count()} cores. Corpus: Genesis (KJV), {n} chunks of
at most 200 tokens; embedding them with all-MiniLM-L6-v2 on the CPU took
{embed:.1f} s ({n / embed:.1f} chunks/s), the same for every index.

## Ingestion (chunks per second)

| index | indexing alone | embedded and indexed | ÷ NumPy floor |
| --- | ---: | ---: | ---: |
{ingest_rows}

## Queries (top {K}; p50 over 3 × 34 questions, interleaved)

Recall: the share of the exact top {K} (NumPy's) that the index's vector search found.

| chunks | index, search | p50 ms | ÷ NumPy vector | recall |
| ---: | --- | ---: | ---: | ---: |
{chr(10).join(query_rows)}
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.md").write_text(report)
    (RESULTS / "memory.json").write_text(json.dumps({"when": stamp, **found}, indent=2))
    print(report)


if __name__ == "__main__":
    main()

"""An ingestion job lives in the process that runs it and beats while it works, and
outlives that process: a worker process finds it silent and takes it over (one
process wins), goes on without redoing what was indexed, and the process that lost
it stops writing it. Uploaded files are kept beside their job until it ends, for
that. A job stored before jobs were resumable is reported (then stored)
interrupted, with what to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from hangar.admission import Admission
from hangar.memory.documents import Upload
from hangar.memory.embedders import LocalEmbedder
from hangar.memory.index import KnowledgeIndex
from hangar.memory.knowledge import STALE_SECONDS, Knowledge
from hangar.memory.sqlite_index import SqliteKnowledgeIndex
from hangar.spec import parse_document
from hangar.store.base import Store
from hangar.store.sql import SqlStore
from tests.helpers import doc, trusted

EMBEDDER = LocalEmbedder()
GRANTED = Admission.fixed(trusted())
"""The tests' folders are under /tmp, which the administrator grants ``default``."""


def ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


def job(status: str, seconds_ago: float, **more: Any) -> dict[str, Any]:
    stamp = ago(seconds_ago)
    return {
        "id": "ing_1",
        "knowledgeBase": "kb",
        "status": status,
        "createdAt": stamp,
        "updatedAt": stamp,
        **more,
    }


async def test_a_silent_job_of_an_earlier_version_is_reported_interrupted(tmp_path: Path) -> None:
    index = SqliteKnowledgeIndex(tmp_path / "knowledge.db")
    knowledge = Knowledge(cast(Store, None), lambda: index)
    try:
        await index.save_job("default", "ing_1", job("running", STALE_SECONDS + 30))
        found = await knowledge.job("default", "kb", "ing_1")
        assert found["status"] == "interrupted"
        assert "send the files again" in found["error"]["hint"]

        await index.save_job("default", "ing_1", job("running", 5))
        assert (await knowledge.job("default", "kb", "ing_1"))["status"] == "running"
        await index.save_job("default", "ing_1", job("succeeded", STALE_SECONDS + 30))
        assert (await knowledge.job("default", "kb", "ing_1"))["status"] == "succeeded"
        # One stored as resumable is not interrupted: a worker process resumes it.
        silent = job("running", STALE_SECONDS + 30, resumable=True)
        await index.save_job("default", "ing_1", silent)
        assert (await knowledge.job("default", "kb", "ing_1"))["status"] == "running"
    finally:
        await index.close()


@pytest.fixture
async def handbook(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, Path]]:
    """A store holding knowledge base ``handbook`` over a folder, and that folder."""
    docs = tmp_path / "docs"
    docs.mkdir()
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hangar.db'}")
    await store.migrate()
    resource, problems = parse_document(
        doc("KnowledgeBase", "handbook", {"sources": [{"folder": str(docs)}]})
    )
    assert resource is not None, problems
    await store.apply_resource("default", resource)
    try:
        yield store, docs
    finally:
        await store.close()


async def test_a_job_whose_process_died_is_resumed_by_one_process_and_finishes(
    handbook: tuple[SqlStore, Path], empty_index: KnowledgeIndex
) -> None:
    store, docs = handbook
    (docs / "bees.txt").write_text("Bees keep their hive warm in winter by shivering.")
    first = Knowledge(store, lambda: empty_index, EMBEDDER, GRANTED)
    await first.ingest("default", "handbook")
    await first.wait()
    # More files come; the process ingesting them dies after the first one.
    (docs / "ants.txt").write_text("Ants farm aphids for their honeydew.")
    (docs / "wasps.txt").write_text("Paper wasps chew wood into paper for their nests.")
    dead = job("running", STALE_SECONDS + 30, resumable=True, total=3, done=1)
    dead |= {"id": "ing_dead", "knowledgeBase": "handbook"}
    await empty_index.save_job("default", "ing_dead", dead)
    earlier = job("running", STALE_SECONDS + 30) | {"id": "ing_earlier"}  # not resumable
    await empty_index.save_job("default", "ing_earlier", earlier)

    workers = [Knowledge(store, lambda: empty_index, EMBEDDER, GRANTED) for _ in range(2)]
    taken = await asyncio.gather(*(w.resume_stale() for w in workers))
    assert sorted(taken) == [[], ["ing_dead"]]  # one process won it
    for worker in workers:
        await worker.wait()
    found = await workers[0].job("default", "handbook", "ing_dead")
    assert found["status"] == "succeeded", found
    assert (found["resumed"], found["total"], found["done"]) == (1, 3, 3)
    assert (found["unchanged"], found["indexed"]) == (1, 2)  # bees.txt was not redone
    sources = [s.source for s in await empty_index.sources("default", "handbook")]
    assert sorted(Path(s).name for s in sources) == ["ants.txt", "bees.txt", "wasps.txt"]
    assert await workers[0].resume_stale() == []  # nothing silent is left
    # The earlier version's job cannot be resumed: it is stored as interrupted, once.
    stored = await empty_index.get_job("default", "ing_earlier")
    assert stored is not None and stored["status"] == "interrupted"


class _GatedEmbedder:
    """The local embedder, held before its first answer until the test lets it go."""

    def __init__(self) -> None:
        self.name = EMBEDDER.name
        self.max_tokens = EMBEDDER.max_tokens
        self.count_tokens = EMBEDDER.count_tokens
        self.waiting = asyncio.Event()
        self.go = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.waiting.set()
        await self.go.wait()
        return await EMBEDDER.embed(texts)


async def test_a_slow_process_whose_job_was_taken_over_stops_writing_it(
    handbook: tuple[SqlStore, Path], empty_index: KnowledgeIndex
) -> None:
    store, docs = handbook
    (docs / "bees.txt").write_text("Bees keep their hive warm in winter by shivering.")
    (docs / "ants.txt").write_text("Ants farm aphids for their honeydew.")
    gate = _GatedEmbedder()
    slow = Knowledge(store, lambda: empty_index, gate, GRANTED)  # type: ignore[arg-type]
    started = await slow.ingest("default", "handbook")
    await gate.waiting.wait()  # stuck in its first file, saying nothing for too long
    # Another process found it silent and took it over, as resume_stale does.
    taken = started | {"resumed": 1, "updatedAt": ago(0)}
    assert await empty_index.save_job("default", started["id"], taken, saved=started["updatedAt"])
    gate.go.set()
    await slow.wait()
    stored = await empty_index.get_job("default", started["id"])
    assert stored == taken  # the slow process's progress and end were not written


async def test_an_upload_job_whose_process_stopped_is_finished_from_its_kept_files(
    handbook: tuple[SqlStore, Path], empty_index: KnowledgeIndex
) -> None:
    store, _ = handbook
    gate = _GatedEmbedder()
    stopping = Knowledge(store, lambda: empty_index, gate, GRANTED)  # type: ignore[arg-type]
    sent = [
        Upload("bees.txt", b"Bees keep their hive warm in winter by shivering.", 49),
        Upload("ants.txt", b"Ants farm aphids for their honeydew.", 36),
    ]
    started = await stopping.ingest("default", "handbook", sent)
    await gate.waiting.wait()
    await stopping.close()  # the process stops (SIGTERM) in the middle of the job
    left = await empty_index.get_job("default", started["id"])
    assert left is not None and left["status"] == "running"  # left for another
    assert [u.name for u in await empty_index.uploads("default", started["id"])] == [
        "bees.txt",
        "ants.txt",
    ]
    # A minute later it is silent, and a worker process finds it.
    await empty_index.save_job("default", started["id"], left | {"updatedAt": ago(90)})
    worker = Knowledge(store, lambda: empty_index, EMBEDDER, GRANTED)
    assert await worker.resume_stale() == [started["id"]]
    await worker.wait()
    found = await worker.job("default", "handbook", started["id"])
    assert found["status"] == "succeeded", found
    assert (found["resumed"], found["indexed"], found["errors"]) == (1, 2, [])
    sources = [s.source for s in await empty_index.sources("default", "handbook")]
    assert sorted(sources) == ["ants.txt", "bees.txt"]
    assert await empty_index.uploads("default", started["id"]) == []  # gone with the job


async def test_an_upload_job_whose_process_died_before_keeping_its_files_is_interrupted(
    handbook: tuple[SqlStore, Path], empty_index: KnowledgeIndex
) -> None:
    """The job is stored first, its files just after: a process dying in between leaves
    a job with nothing to resume from, said so, and no file kept for no job."""
    store, _ = handbook
    fileless = job("running", STALE_SECONDS + 30, resumable=True, uploads=True, total=2)
    fileless["knowledgeBase"] = "handbook"
    await empty_index.save_job("default", "ing_1", fileless)
    worker = Knowledge(store, lambda: empty_index, EMBEDDER, GRANTED)
    assert await worker.resume_stale() == []
    stored = await empty_index.get_job("default", "ing_1")
    assert stored is not None and stored["status"] == "interrupted"
    assert "send the files again" in stored["error"]["hint"]


async def test_a_job_whose_base_was_deleted_fails_when_found_and_its_files_go(
    handbook: tuple[SqlStore, Path], empty_index: KnowledgeIndex
) -> None:
    store, _ = handbook
    orphan = job("running", STALE_SECONDS + 30, resumable=True, uploads=True, total=1)
    orphan["knowledgeBase"] = "deleted-since"
    await empty_index.save_job("default", "ing_1", orphan)
    await empty_index.keep_uploads("default", "ing_1", [Upload("a.txt", b"some text", 9)])
    worker = Knowledge(store, lambda: empty_index, EMBEDDER, GRANTED)
    assert await worker.resume_stale() == []
    stored = await empty_index.get_job("default", "ing_1")
    assert stored is not None and stored["status"] == "failed"
    assert stored["error"]["code"] == "knowledge_base_not_found"
    assert await empty_index.uploads("default", "ing_1") == []

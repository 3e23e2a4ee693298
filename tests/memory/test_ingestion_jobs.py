"""An ingestion job lives in the process that runs it and beats while it works: one
whose process died is reported interrupted (with what to do), not running forever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from hangar.memory.index import SqliteKnowledgeIndex
from hangar.memory.knowledge import STALE_SECONDS, Knowledge
from hangar.store.base import Store


def job(status: str, seconds_ago: float) -> dict[str, Any]:
    stamp = (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()
    return {
        "id": "ing_1",
        "knowledgeBase": "kb",
        "status": status,
        "createdAt": stamp,
        "updatedAt": stamp,
    }


async def test_a_silent_running_job_is_reported_interrupted(tmp_path: Path) -> None:
    index = SqliteKnowledgeIndex(tmp_path / "knowledge.db")
    knowledge = Knowledge(cast(Store, None), lambda: index)
    try:
        await index.save_job("default", "ing_1", job("running", STALE_SECONDS + 30))
        found = await knowledge.job("default", "kb", "ing_1")
        assert found["status"] == "interrupted"
        assert "start it again" in found["error"]["hint"]

        await index.save_job("default", "ing_1", job("running", 5))
        assert (await knowledge.job("default", "kb", "ing_1"))["status"] == "running"
        await index.save_job("default", "ing_1", job("succeeded", STALE_SECONDS + 30))
        assert (await knowledge.job("default", "kb", "ing_1"))["status"] == "succeeded"
    finally:
        await index.close()

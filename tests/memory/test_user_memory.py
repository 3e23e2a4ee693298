"""Long-term memory of end users, on SQLite and PostgreSQL: after a run for a user the
facts it taught are extracted, deduplicated or updated, and recalled at the start of
that user's later runs (not anyone else's); people list, add, edit and delete them;
forgetting a user leaves nothing of theirs in any table of either database file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from hangar.memory.embedders import LocalEmbedder
from hangar.memory.users import UserMemories, parse_facts
from hangar.models.scripted import ScriptedModel
from hangar.spec.model import ScriptStep
from hangar.store.sql import SqlStore
from hangar.telemetry.stored import FLUSH_SECONDS
from tests.conftest import POSTGRES_URL
from tests.helpers import (
    ServerThread,
    agent,
    doc,
    ingested,
    queued_run,
    scripted_model,
    wait_until,
)

USER = "alice-7f3"


def extractor(*facts: str, updates: list[dict[str, str]] | None = None) -> dict[str, Any]:
    answer = {"facts": list(facts), "updates": updates or []}
    return scripted_model("extractor", {"text": json.dumps(answer)})


def setup(api: httpx.Client, *facts: str) -> None:
    response = api.post(
        "/v1/apply",
        json=[
            scripted_model("chat", {"text": "Noted."}),
            extractor(*facts),
            agent("assistant", "chat", memory={"user": {"model": "extractor", "recall": 3}}),
        ],
    )
    assert response.status_code == 200, response.text


def memories(api: httpx.Client, user: str = USER) -> list[dict[str, Any]]:
    response = api.get(f"/v1/users/{user}/memories")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def run(api: httpx.Client, text: str, user: str | None = USER, **body: Any) -> dict[str, Any]:
    path = "/v1/agents/assistant/runs"
    if "session" in body:
        path = f"/v1/sessions/{body.pop('session')}/runs"
    response = api.post(path, json={"input": text, "user": user, **body})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded", response.json()
    return dict(response.json())


def events(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    return list(api.get(f"/v1/runs/{run_id}/events").json()["items"])


def test_facts_are_learnt_deduplicated_updated_and_recalled(backend: ServerThread) -> None:
    with backend.client() as api:
        setup(api, "The user lives in Lisbon.", "The user has a dog named Rex.")
        first = run(api, "My dog Rex and I just moved to Lisbon.")
        wait_until(lambda: len(memories(api)) == 2, what="facts learnt")
        kept = {m["text"]: m for m in memories(api)}
        assert kept["The user lives in Lisbon."]["run_id"] == first["id"]

        # A restatement replaces the wording it repeats; a correction by id rewords it.
        lisbon = kept["The user lives in Lisbon."]["id"]
        api.post(
            "/v1/apply",
            json=extractor(
                "The user has a dog called Rex.",
                "The user plays the cello.",
                updates=[{"id": lisbon, "text": "The user lives in Porto."}],
            ),
        )
        run(api, "We moved again, to Porto. I still play cello.")
        wait_until(lambda: len(memories(api)) == 3, what="the second run's facts")
        wait_until(
            lambda: (
                {m["text"] for m in memories(api)}
                == {
                    "The user lives in Porto.",
                    "The user has a dog called Rex.",
                    "The user plays the cello.",
                }
            ),
            what="the facts reworded",
        )

        later = run(api, "Where do I live?")
        recalled = next(e for e in events(api, later["id"]) if e["type"] == "memory")["data"]
        assert "The user lives in Porto." in [m["text"] for m in recalled["recalled"]]
        request = next(e for e in events(api, later["id"]) if e["type"] == "model_request")
        assert request["data"]["messages"] == 2  # what is remembered, then the question

        stranger = run(api, "Where do I live?", user="bob")
        recalled = next(e for e in events(api, stranger["id"]) if e["type"] == "memory")["data"]
        assert recalled["recalled"] == []
        nobody = run(api, "Where do I live?", user=None)
        assert not [e for e in events(api, nobody["id"]) if e["type"] == "memory"]
        # What bob's run taught (the scripted extractor repeats itself) is bob's alone.
        wait_until(lambda: len(memories(api, "bob")) == 2, what="bob's facts")
        assert {m["user"] for m in memories(api, "bob")} == {"bob"}
        assert len(memories(api)) == 3


def test_people_list_add_edit_and_delete_memories(backend: ServerThread) -> None:
    with backend.client() as api:
        setup(api)
        added = api.post(f"/v1/users/{USER}/memories", json={"text": "The user is vegan."})
        assert added.status_code == 201
        memory_id = added.json()["id"]
        edited = api.patch(
            f"/v1/users/{USER}/memories/{memory_id}", json={"text": "The user is vegetarian."}
        )
        assert edited.json()["text"] == "The user is vegetarian."
        assert [m["text"] for m in memories(api)] == ["The user is vegetarian."]
        assert memories(api, "bob") == []
        wrong_user = api.delete(f"/v1/users/bob/memories/{memory_id}")
        assert wrong_user.status_code == 404
        assert wrong_user.json()["error"]["code"] == "memory_not_found"
        assert api.delete(f"/v1/users/{USER}/memories/{memory_id}").status_code == 200
        assert memories(api) == []
        assert api.post(f"/v1/users/{USER}/memories", json={"text": ""}).status_code == 422
        bad_user = api.post("/v1/agents/assistant/runs", json={"input": "hi", "user": "a\nb"})
        assert bad_user.status_code == 422
        assert "control characters" in bad_user.json()["error"]["message"]


async def _database_text(server: ServerThread) -> str:
    """Every row of every table Hangar keeps, as text: both SQLite files, or every
    table of the PostgreSQL schema."""
    schema = server.settings.database_schema
    if schema is None:
        dumped = []
        for name in ("hangar.db", "knowledge.db"):
            path: Path = server.settings.home / name
            assert path.exists(), path
            db = sqlite3.connect(path)
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                try:
                    dumped += [repr(row) for row in db.execute(f'SELECT * FROM "{table}"')]
                except sqlite3.OperationalError as exc:  # a virtual table's module
                    assert "no such module" in str(exc), exc
            db.close()
        return "\n".join(dumped)
    conn = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        tables = await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        assert len(tables) > 10
        dumped = []
        for (table,) in tables:
            rows = await conn.fetch(f'SELECT t::text FROM "{schema}"."{table}" t')
            dumped += [row[0] for row in rows]
        return "\n".join(dumped)
    finally:
        await conn.close()


async def test_runs_of_one_user_learnt_from_at_once_keep_a_fact_once(tmp_path: Path) -> None:
    """Learning comes after a run's end: a user's next run may end while the model is
    still reading the last one. Each is told what the one before kept."""
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
    await store.migrate()
    try:
        learner = UserMemories(store, LocalEmbedder())
        answer = json.dumps({"facts": ["The user keeps bees."], "updates": []})
        slow = ScriptedModel("extractor", [ScriptStep(text=answer, delay_seconds=0.3)])
        said = [{"role": "user", "content": "I keep bees."}, {"role": "assistant", "content": "Ok"}]
        runs = [await store.create_run(queued_run(agent="a", user=USER)) for _ in range(2)]
        await asyncio.gather(*(learner.learn("default", USER, slow, said, run.id) for run in runs))
        kept = await store.list_memories("default", USER)
        assert [m.text for m in kept] == ["The user keeps bees."]
    finally:
        await store.close()


class _MeetingEmbedder:
    """The local embedder, made to wait until every learner has embedded its facts:
    all of them have read the memories before any keeps what it learnt."""

    def __init__(self, embedder: LocalEmbedder, learners: int) -> None:
        self.embedder = embedder
        self.max_tokens = embedder.max_tokens
        self.count_tokens = embedder.count_tokens
        self.barrier = asyncio.Barrier(learners)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = await self.embedder.embed(texts)
        await self.barrier.wait()
        return vectors


async def test_two_processes_learning_one_users_fact_at_once_keep_it_once(
    store: SqlStore,
) -> None:
    """Two workers each end a run of the same user and learn from it at the same
    moment: neither model was told of the other's fact, yet it is kept once."""
    twin = SqlStore(store.url, schema=store.schema)  # the other process's own store
    try:
        embedder = _MeetingEmbedder(LocalEmbedder(), learners=2)
        answer = json.dumps({"facts": ["The user keeps bees."], "updates": []})
        said = [{"role": "user", "content": "I keep bees."}, {"role": "assistant", "content": "Ok"}]
        learners = [UserMemories(s, embedder) for s in (store, twin)]  # type: ignore[arg-type]
        runs = [await store.create_run(queued_run(agent="a", user=USER)) for _ in learners]
        learnt = await asyncio.gather(
            *(
                learner.learn(
                    "default",
                    USER,
                    ScriptedModel("extractor", [ScriptStep(text=answer)]),
                    said,
                    r.id,
                )
                for learner, r in zip(learners, runs, strict=True)
            )
        )
        assert sorted(x.added for x in learnt) == [0, 1]
        kept = await store.list_memories("default", USER)
        assert [m.text for m in kept] == ["The user keeps bees."]
    finally:
        await twin.close()


def test_forgetting_a_user_leaves_nothing_of_theirs_in_any_table(
    backend: ServerThread,
) -> None:
    with backend.client() as api:
        setup(api, "The user keeps bees.")  # (in the Model's spec: a trace of no user)
        api.post("/v1/apply", json=doc("KnowledgeBase", "hives", {}))
        ingested(api, "hives", "hives.md", b"# Hives\n\nA hive holds one queen.")
        run(api, "I keep bees near Sintra, ask me about honey.")
        session = api.post("/v1/sessions", json={"agent": "assistant"}).json()["id"]
        run(api, "Zebulon is my beekeeping mentor.", session=session)
        run(api, "How do I calm the bees?", user="bob")
        wait_until(lambda: len(memories(api)) == 1, what="facts learnt")
        traces = {USER, "Sintra", "Zebulon", memories(api)[0]["id"]}
        time.sleep(3 * FLUSH_SECONDS)  # the request spans that name the user are stored
        before = asyncio.run(_database_text(backend))
        assert all(trace in before for trace in traces)  # the scan does see them

        forgotten = api.delete(f"/v1/users/{USER}")
        assert forgotten.status_code == 200, forgotten.text
        assert forgotten.json()["removed"] == {"runs": 2, "sessions": 1, "memories": 1}
        assert memories(api) == []
        time.sleep(3 * FLUSH_SECONDS)  # spans of these last requests are stored too
        after = asyncio.run(_database_text(backend))
        for trace in traces:
            assert trace not in after, trace
        assert "How do I calm the bees?" in after  # other users keep theirs
        assert "A hive holds one queen." in after  # the knowledge index was scanned too
        assert api.get(f"/v1/sessions/{session}").status_code == 404


@pytest.mark.parametrize(
    ("answer", "facts", "updates"),
    [
        ('{"facts": ["The user is 30."]}', ["The user is 30."], {}),
        ('```json\n{"facts": [" A  b ", "A b", 3], "updates": []}\n```', ["A b"], {}),
        (
            '{"facts": [], "updates": [{"id": "mem_1", "text": "New."}, {"id": 2}]}',
            [],
            {"mem_1": "New."},
        ),
        ("I could not find any facts.", [], {}),
        ('{"facts": "not a list"}', [], {}),
        ("[1, 2]", [], {}),
    ],
)
def test_a_models_answer_is_read_leniently(
    answer: str, facts: list[str], updates: dict[str, str]
) -> None:
    assert parse_facts(answer) == (facts, updates)

"""Knowledge bases end to end over REST, on SQLite and on PostgreSQL: files uploaded
or declared (a folder, URLs through the egress allow-list) are ingested as a job with
progress; bad files get their own errors while the rest go on; re-ingesting replaces
only what changed; agents search by tool or get passages before their first model
call, and the run's result cites what they used."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.helpers import ServerThread, agent, doc, scripted_model, tool_step
from tests.memory.pdf import pdf_with_text

PUMP = b"""# Pump manual

## Faults

The error code HX-4417 means the fuel pump relay has failed. Replace the relay.

## Cleaning

Rinse the filter with warm water once a month.
"""
BREAD = b"# Bread\n\nDough rises because yeast gives off carbon dioxide while proofing.\n"
HANDBOOK = doc(
    "KnowledgeBase",
    "handbook",
    {"description": "The pump handbook", "chunking": {"maxTokens": 64, "overlap": 8}},
)


@pytest.fixture
def kb_api(backend: ServerThread) -> Iterator[httpx.Client]:
    with backend.client() as client:
        assert client.post("/v1/apply", json=HANDBOOK).status_code == 200
        yield client


def finished(api: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while job["status"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        job = api.get(f"/v1/knowledgebases/{job['knowledgeBase']}/ingestions/{job['id']}").json()
    assert job["status"] != "running", job
    return job


def upload(api: httpx.Client, *files: tuple[str, Any], kb: str = "handbook") -> dict[str, Any]:
    parts = [("file", (name, data)) for name, data in files]
    response = api.post(f"/v1/knowledgebases/{kb}/ingestions", files=parts)
    assert response.status_code == 202, response.text
    return finished(api, response.json())


def search(api: httpx.Client, query: str, **body: Any) -> list[dict[str, Any]]:
    response = api.post("/v1/knowledgebases/handbook/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_uploads_are_indexed_and_each_bad_file_gets_its_own_error(
    kb_api: httpx.Client, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.txt"
    with huge.open("wb") as out:  # 100 MB of text
        for _ in range(100):
            out.write(b"lorem ipsum " * 87_382)
    with huge.open("rb") as big:
        job = upload(
            kb_api,
            ("pump.md", PUMP),
            ("empty.txt", b""),
            ("photo.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"),
            ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Cat"),
            ("huge.txt", big),
            ("relay.pdf", pdf_with_text("Relay part number RL-220 fits every pump.")),
            ("bread.html", b"<html><body><h1>Bread</h1><p>" + BREAD[8:] + b"</p></body></html>"),
        )
    assert job["status"] == "succeeded"
    assert (job["total"], job["done"], job["indexed"]) == (7, 7, 3)
    errors = {e["source"]: e for e in job["errors"]}
    assert sorted(errors) == ["broken.pdf", "empty.txt", "huge.txt", "photo.md"]
    assert "empty" in errors["empty.txt"]["message"]
    assert "binary" in errors["photo.md"]["message"]
    assert "not a readable PDF" in errors["broken.pdf"]["message"]
    assert errors["huge.txt"]["code"] == "document_too_large"
    assert "100.0 MiB" in errors["huge.txt"]["message"]

    top = search(kb_api, "what does HX-4417 mean")[0]
    assert top["citation"]["source"] == "pump.md"
    assert top["citation"]["title"] == "Pump manual > Faults"
    assert "relay has failed" in top["text"]
    assert search(kb_api, "RL-220", mode="text")[0]["citation"]["source"] == "relay.pdf"
    assert search(kb_api, "why does dough rise", mode="vector")[0]["citation"] == {
        "knowledge_base": "handbook",
        "source": "bread.html",
        "chunk": 0,
        "title": "Bread",
    }
    sources = kb_api.get("/v1/knowledgebases/handbook/sources").json()["items"]
    assert [(s["source"], s["chunks"]) for s in sources] == [
        ("bread.html", 1),
        ("pump.md", 2),
        ("relay.pdf", 1),
    ]


def test_reingesting_replaces_only_what_changed(kb_api: httpx.Client) -> None:
    upload(kb_api, ("pump.md", PUMP), ("bread.md", BREAD))
    changed = PUMP.replace(b"HX-4417", b"ZQ-9")
    job = upload(kb_api, ("pump.md", changed), ("bread.md", BREAD))
    assert (job["indexed"], job["unchanged"], job["errors"]) == (1, 1, [])
    assert search(kb_api, "HX-4417", mode="text") == []
    assert search(kb_api, "ZQ-9", mode="text")[0]["citation"]["source"] == "pump.md"
    removed = kb_api.delete("/v1/knowledgebases/handbook/sources", params={"source": "bread.md"})
    assert removed.json() == {"source": "bread.md", "deleted": True, "chunks": 1}
    assert search(kb_api, "yeast", mode="text") == []


class _Pages(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def test_declared_folder_and_url_sources(kb_api: httpx.Client, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "deep").mkdir(parents=True)
    (docs / "pump.md").write_bytes(PUMP)
    (docs / "deep" / "bread.txt").write_bytes(BREAD)
    (docs / "logo.png").write_bytes(b"\x89PNG")  # not matched by the include globs
    site = tmp_path / "site"
    site.mkdir()
    (site / "guide.html").write_text("<h1>Guide</h1><p>The reset button is blue.</p>")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Pages, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    guide = f"http://127.0.0.1:{httpd.server_address[1]}/guide.html"
    spec = {
        "sources": [
            {"folder": str(docs)},
            {"url": guide},
            {"url": "http://example.com/outside.html"},
        ],
        "egress": {"allowHosts": [f"127.0.0.1:{httpd.server_address[1]}"]},
    }
    try:
        kb_api.post("/v1/apply", json=doc("KnowledgeBase", "handbook", spec))
        started = kb_api.post("/v1/knowledgebases/handbook/ingestions")
        assert started.status_code == 202
        job = finished(kb_api, started.json())
        assert (job["total"], job["indexed"]) == (4, 3)
        [refused] = job["errors"]
        assert refused["source"] == "http://example.com/outside.html"
        assert "allow-list" in refused["message"] and "allowHosts" in refused["hint"]
        assert search(kb_api, "reset button color")[0]["citation"]["source"] == guide
        listed = kb_api.get("/v1/knowledgebases/handbook/sources").json()["items"]
        assert sorted(s["source"] for s in listed) == sorted(
            [f"{docs}/deep/bread.txt", f"{docs}/pump.md", guide]
        )

        (docs / "deep" / "bread.txt").unlink()  # gone from the folder: its chunks go
        job = finished(kb_api, kb_api.post("/v1/knowledgebases/handbook/ingestions").json())
        assert (job["indexed"], job["unchanged"], job["removed"]) == (0, 2, 1)
        assert search(kb_api, "yeast", mode="text") == []
    finally:
        httpd.shutdown()


def test_clear_errors_for_bad_requests(kb_api: httpx.Client) -> None:
    missing = kb_api.post("/v1/knowledgebases/nope/ingestions", files=[("f", ("a.md", b"x"))])
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "knowledge_base_not_found"
    not_multipart = kb_api.post("/v1/knowledgebases/handbook/ingestions", json={"a": 1})
    assert not_multipart.status_code == 422
    assert "multipart/form-data" in not_multipart.json()["error"]["message"]
    nothing = kb_api.post("/v1/knowledgebases/handbook/ingestions")
    assert nothing.status_code == 422
    assert "declares no sources" in nothing.json()["error"]["message"]
    twice = kb_api.post(
        "/v1/knowledgebases/handbook/ingestions",
        files=[("f", ("a.md", b"x")), ("f", ("a.md", b"y"))],
    )
    assert twice.status_code == 422
    assert kb_api.get("/v1/knowledgebases/handbook/ingestions/ing_x").status_code == 404
    for body in ({"query": ""}, {"query": "x", "mode": "fuzzy"}, {"query": "x", "k": 0}, {}):
        refused = kb_api.post("/v1/knowledgebases/handbook/search", json=body)
        assert refused.status_code == 422, body
        assert refused.json()["error"]["code"] == "invalid_request"
    bad = kb_api.post(
        "/v1/apply",
        json=doc("KnowledgeBase", "bad", {"chunking": {"maxTokens": 32, "overlap": 32}}),
    )
    assert bad.status_code == 422 and "overlap (32)" in bad.text


def test_an_agent_searches_by_tool_and_cites_what_it_used(kb_api: httpx.Client) -> None:
    upload(kb_api, ("pump.md", PUMP), ("bread.md", BREAD))
    kb_api.post(
        "/v1/apply",
        json=[
            scripted_model(
                "m",
                tool_step("search_knowledge", query="error code HX-4417"),
                {"text": "The fuel pump relay has failed [1]."},
            ),
            agent("helper", "m", knowledge=[{"name": "handbook", "topK": 2}]),
        ],
    )
    run = kb_api.post("/v1/agents/helper/runs", json={"input": "What is HX-4417?"}).json()
    assert run["status"] == "succeeded", run
    cited = run["output"]["citations"]
    assert cited[0] == {
        "knowledge_base": "handbook",
        "source": "pump.md",
        "chunk": 0,
        "title": "Pump manual > Faults",
    }
    assert len(cited) == 2
    events = kb_api.get(f"/v1/runs/{run['id']}/events").json()["items"]
    request = next(e for e in events if e["type"] == "model_request")
    assert "search_knowledge" in request["data"]["tools"]
    result = next(e for e in events if e["type"] == "tool_result")
    assert result["data"]["content"].startswith("[1] (handbook: pump.md, chunk 0")
    assert "relay has failed" in result["data"]["content"]


def test_automatic_retrieval_puts_passages_before_the_first_model_call(
    kb_api: httpx.Client,
) -> None:
    upload(kb_api, ("pump.md", PUMP), ("bread.md", BREAD))
    kb_api.post(
        "/v1/apply",
        json=[
            scripted_model("m", {"text": "Yeast makes it rise [1]."}),
            agent(
                "baker",
                "m",
                instructions="Answer briefly.",
                knowledge=[{"name": "handbook", "retrieval": "auto", "topK": 1}],
            ),
        ],
    )
    run = kb_api.post("/v1/agents/baker/runs", json={"input": "Why does dough rise?"}).json()
    assert run["output"]["citations"] == [
        {"knowledge_base": "handbook", "source": "bread.md", "chunk": 0, "title": "Bread"}
    ]
    events = kb_api.get(f"/v1/runs/{run['id']}/events").json()["items"]
    assert [e["type"] for e in events][:3] == ["run_started", "knowledge", "model_request"]
    retrieved = events[1]["data"]
    assert retrieved["query"] == "Why does dough rise?"
    assert "[1] (handbook: bread.md, chunk 0, Bread)" in retrieved["context"]
    assert events[2]["data"]["messages"] == 3  # instructions, passages, question
    assert "search_knowledge" not in events[2]["data"]["tools"]


def test_a_run_whose_agent_names_a_missing_base_fails_with_a_clear_error(
    kb_api: httpx.Client,
) -> None:
    kb_api.post(
        "/v1/apply",
        json=[
            scripted_model("m", {"text": "unused"}),
            agent("lost", "m", knowledge=[{"name": "nowhere"}]),
        ],
    )
    run = kb_api.post("/v1/agents/lost/runs", json={"input": "hello?"}).json()
    assert (run["status"], run["error"]["code"]) == ("failed", "configuration_error")
    assert "knowledge base 'nowhere' not found" in run["error"]["message"]
    assert "KnowledgeBase" in run["error"]["hint"]


def test_any_openai_compatible_endpoint_can_embed(
    kb_api: httpx.Client,
) -> None:
    # Hangar's own /v1/embeddings, reached over HTTP like any provider's, with the key
    # from a Secret of the namespace.
    key = kb_api.headers["Authorization"].removeprefix("Bearer ")
    embedder = {
        "provider": "openai",
        "model": "all-minilm-l6-v2",
        "baseUrl": str(kb_api.base_url).rstrip("/") + "/v1",
        "apiKey": {"secret": "embeddings", "key": "key"},
    }
    kb_api.post(
        "/v1/apply",
        json=[
            doc("Secret", "embeddings", {"data": {"key": key}}),
            doc("KnowledgeBase", "remote", {"embedder": embedder}),
        ],
    ).raise_for_status()
    parts = [("file", ("pump.md", PUMP)), ("file", ("bread.md", BREAD))]
    response = kb_api.post("/v1/knowledgebases/remote/ingestions", files=parts)
    job = finished(kb_api, response.json())
    assert (job["status"], job["indexed"], job["errors"]) == ("succeeded", 2, [])
    found = kb_api.post(
        "/v1/knowledgebases/remote/search", json={"query": "why does dough rise", "mode": "vector"}
    ).json()["items"]
    assert found[0]["citation"]["source"] == "bread.md"


def test_an_ingestion_leaves_postgresqls_statistics_fresh(pg_schema: str, tmp_path: Path) -> None:
    """Else PostgreSQL scans every row (not the HNSW index) until autovacuum comes."""
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    server = ServerThread(
        tmp_path / "home", database_url=POSTGRES_URL, database_schema=pg_schema
    ).start()
    try:
        with server.client() as api:
            api.post("/v1/apply", json=HANDBOOK)
            upload(api, ("pump.md", PUMP))
    finally:
        server.stop()

    async def analyzed() -> object:
        conn = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""))
        try:
            return await conn.fetchval(
                "SELECT last_analyze FROM pg_stat_user_tables"
                " WHERE schemaname = $1 AND relname = 'knowledge_chunks'",
                pg_schema,
            )
        finally:
            await conn.close()

    assert asyncio.run(analyzed()) is not None

"""Batches: a JSONL file of 500 requests, each its own run; bad lines get their own
error and the rest complete; progress and an OpenAI-shaped results file."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.helpers import agent, scripted_model, wait_until


def line(i: int) -> str:
    if i % 50 == 0:
        return "{this is not json"
    if i % 50 == 1:
        return json.dumps({"custom_id": f"req-{i}", "agent": "nobody", "input": "hi"})
    if i % 50 == 2:
        return json.dumps({"custom_id": f"req-{i}", "agent": "answerer"})
    if i % 2:
        return json.dumps({"custom_id": f"req-{i}", "agent": "answerer", "input": f"question {i}"})
    return json.dumps(
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "answerer",
                "messages": [{"role": "user", "content": f"question {i}"}],
            },
        }
    )


def test_a_batch_of_500_lines_gives_a_result_or_an_error_per_line(api: httpx.Client) -> None:
    api.post(
        "/v1/apply", json=[scripted_model("m", {"text": "an answer"}), agent("answerer", "m")]
    ).raise_for_status()
    jsonl = "\n".join(line(i) for i in range(500)) + "\n"
    created = api.post("/v1/batches", content=jsonl, headers={"content-type": "application/jsonl"})
    assert created.status_code == 201, created.text
    batch = created.json()
    assert batch["request_counts"]["total"] == 500

    def finished() -> dict[str, Any] | None:
        now = api.get(f"/v1/batches/{batch['id']}").json()
        return now if now["status"] == "completed" else None

    done = wait_until(finished, timeout=240, what="the batch")
    assert done["request_counts"] == {"total": 500, "completed": 470, "failed": 30}
    results = [
        json.loads(x) for x in api.get(f"/v1/batches/{batch['id']}/results").text.splitlines()
    ]
    assert len(results) == 500
    for i, result in enumerate(results):
        if i % 50 == 0:
            assert result["custom_id"] == f"line-{i + 1}"
            assert result["error"]["code"] == "invalid_request"
            assert "is not JSON" in result["error"]["message"]
        elif i % 50 == 1:
            assert (result["custom_id"], result["error"]["code"]) == (f"req-{i}", "agent_not_found")
        elif i % 50 == 2:
            assert "neither 'messages' nor 'input'" in result["error"]["message"]
        else:
            assert result["custom_id"] == f"req-{i}" and result["error"] is None
            body = result["response"]["body"]
            assert body["choices"][0]["message"]["content"] == "an answer"
    # Each result is its own line's run: its input is that line's question.
    for i in (3, 4, 257, 499):
        run = api.get(f"/v1/runs/{results[i]['run']}").json()
        assert run["input"]["messages"][-1]["content"] == f"question {i}"
    assert api.get("/v1/batches/batch_nope").json()["error"]["code"] == "batch_not_found"
    empty = api.post("/v1/batches", content="\n\n")
    assert empty.status_code == 422 and "empty" in empty.text

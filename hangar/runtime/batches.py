"""Batches: a JSONL file of requests, as OpenAI's Batch API takes them, each line run
as its own run. A line that cannot start a run (bad JSON, no such agent, no
messages, a used-up budget) gets its error and the others go on; progress and the
results file are read from the runs as they finish.

A line is OpenAI's shape, ``{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body": {"model": AGENT, "messages": [...]}}``, or the short
``{"custom_id", "agent", "input"}``.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

from hangar.errors import HangarError, InvalidRequestError
from hangar.ids import new_id
from hangar.runtime.service import RunInput, RunService
from hangar.store.base import BatchStore
from hangar.store.records import BatchItem, RunRecord

MAX_LINES = 50_000


def parse_line(number: int, text: str) -> tuple[str, str, RunInput]:
    """(custom_id, agent, input) of one line, or an ``InvalidRequestError`` saying why."""
    try:
        line = json.loads(text)
    except ValueError as exc:
        raise InvalidRequestError(f"line {number} is not JSON: {exc}") from None
    if not isinstance(line, dict):
        raise InvalidRequestError(f"line {number} is not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise InvalidRequestError(f"line {number} needs 'custom_id', a non-empty string")
    raw_body = line.get("body")
    body: dict[str, Any] = raw_body if isinstance(raw_body, dict) else line
    agent = body.get("model") or body.get("agent")
    if not isinstance(agent, str) or not agent:
        raise InvalidRequestError(f"line {number} names no agent ('body.model' or 'agent')")
    if "messages" in body:
        messages = body["messages"]
    elif isinstance(body.get("input"), str):
        messages = [{"role": "user", "content": body["input"]}]
    else:
        raise InvalidRequestError(f"line {number} has neither 'messages' nor 'input'")
    if not isinstance(messages, list):
        raise InvalidRequestError(f"line {number}: 'messages' must be a list")
    run_input = RunInput(messages=messages, tools=list(body.get("tools") or []))
    run_input.validate()
    return custom_id, agent, run_input


class Batches:
    def __init__(self, store: BatchStore, runs: RunService) -> None:
        self.store = store
        self.runs = runs

    async def create(self, namespace: str, jsonl: str, key_id: str | None = None) -> str:
        lines = [(i + 1, text) for i, text in enumerate(jsonl.splitlines()) if text.strip()]
        if not lines:
            raise InvalidRequestError("the batch is empty: send one JSON request per line")
        if len(lines) > MAX_LINES:
            raise InvalidRequestError(f"a batch holds at most {MAX_LINES} lines")
        batch_id = new_id("batch")
        items: list[BatchItem] = []
        for number, text in lines:
            custom_id = f"line-{number}"
            try:
                custom_id, agent, run_input = parse_line(number, text)
                run_input = dataclasses.replace(run_input, key_id=key_id)
                run = await self.runs.start(namespace, agent, run_input)
            except HangarError as exc:
                error = {"code": exc.code, "message": exc.message, "line": number}
                items.append(BatchItem(number, custom_id, None, error))
                continue
            items.append(BatchItem(number, custom_id, run.id, None))
        await self.store.create_batch(batch_id, namespace, items, key_id)
        return batch_id

    async def describe(
        self, namespace: str, batch_id: str, key_id: str | None = None
    ) -> dict[str, Any] | None:
        """The batch's progress; with ``key_id``, only a batch that key created."""
        found = await self.store.get_batch(namespace, batch_id, key_id)
        if found is None:
            return None
        created, lines = found
        counts: Counter[str] = Counter()
        for item, run in lines:
            if item.error is not None or (
                run is not None and run.status.value != "succeeded" and run.status.finished
            ):
                counts["failed"] += 1
            elif run is not None and run.status.finished:
                counts["completed"] += 1
        done = counts["completed"] + counts["failed"]
        return {
            "id": batch_id,
            "object": "batch",
            "status": "completed" if done == len(lines) else "in_progress",
            "created_at": int(created.timestamp()),
            "request_counts": {
                "total": len(lines),
                "completed": counts["completed"],
                "failed": counts["failed"],
            },
        }

    async def results(
        self, namespace: str, batch_id: str, key_id: str | None = None
    ) -> list[dict[str, Any]] | None:
        """One result per line that has finished, in line order (OpenAI's output shape)."""
        found = await self.store.get_batch(namespace, batch_id, key_id)
        if found is None:
            return None
        out = []
        for item, run in found[1]:
            if item.error is not None:
                out.append({"custom_id": item.custom_id, "response": None, "error": item.error})
            elif run is not None and run.status.finished:
                out.append(_result(item, run))
        return out


def _result(item: BatchItem, run: RunRecord) -> dict[str, Any]:
    if run.status.value != "succeeded":
        error = dict(run.error or {"code": run.reason, "message": run.status.value})
        return {"custom_id": item.custom_id, "run": run.id, "response": None, "error": error}
    output = run.output or {}
    message = dict(output.get("message") or {"role": "assistant", "content": output.get("text")})
    body = {
        "id": f"chatcmpl-{run.id}",
        "object": "chat.completion",
        "model": run.agent,
        "choices": [
            {"index": 0, "message": message, "finish_reason": output.get("finish_reason", "stop")}
        ],
        "usage": {
            "prompt_tokens": run.usage.input_tokens,
            "completion_tokens": run.usage.output_tokens,
            "total_tokens": run.usage.total_tokens,
        },
    }
    return {
        "custom_id": item.custom_id,
        "run": run.id,
        "response": {"status_code": 200, "body": body},
        "error": None,
    }

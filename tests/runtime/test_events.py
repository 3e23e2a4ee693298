"""Typed run events: the stored and served JSON is the one earlier versions wrote, so
events stored before the types existed read, replay and render as they did."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from hangar.cli.render import run_tree
from hangar.runtime.events import (
    ApprovalDecided,
    EventType,
    MemoryLoaded,
    ModelResponded,
    ToolResult,
    parse,
)
from hangar.runtime.replay import replay
from hangar.store.records import RunEvent

STORED = json.loads((Path(__file__).parent / "fixtures" / "events_before_typed.json").read_text())
"""One of each event type (and its variants) as the version before typed events stored it."""


@pytest.mark.parametrize("stored", STORED, ids=lambda e: e["type"])
def test_an_event_stored_before_reads_back_to_the_same_json(stored: dict[str, Any]) -> None:
    event = parse(stored["type"], stored["data"])
    assert event is not None and stored["type"] == event.TYPE
    assert event.to_json() == stored["data"]


def test_every_event_type_has_a_stored_example() -> None:
    assert {e["type"] for e in STORED} == {t.value for t in EventType}


def test_an_event_type_from_a_newer_version_is_passed_over() -> None:
    assert parse("sandbox_opened", {"id": "sbx_1"}) is None


def test_fields_read_by_name() -> None:
    by_type = {e["type"]: parse(e["type"], e["data"]) for e in STORED}
    response = by_type["model_response"]
    assert isinstance(response, ModelResponded)
    assert response.text == "" and response.tool_calls[0]["id"] == "call_1"
    assert response.usage.input_tokens == 12
    decided = parse("approval_decided", STORED[12]["data"])
    assert isinstance(decided, ApprovalDecided) and not decided.approved
    memory = parse("memory", STORED[2]["data"])
    assert isinstance(memory, MemoryLoaded) and memory.usage is None
    assert [m.text for m in memory.recalled or ()] == ["prefers metric units"]


def test_a_tool_result_without_outcome_takes_it_from_is_error() -> None:
    """Events from before the audit's outcome word existed."""
    old = {"step": 1, "id": "c", "name": "t", "content": "x", "is_error": True, "duration_ms": 1}
    result = parse("tool_result", old)
    assert isinstance(result, ToolResult) and result.outcome == "error"


def _run_events(items: list[dict[str, Any]]) -> list[RunEvent]:
    return [
        RunEvent("run_x", seq, "default", e["type"], e["data"], datetime.now(UTC))
        for seq, e in enumerate(items, start=1)
    ]


def test_stored_events_replay_to_what_the_run_spent_and_decided() -> None:
    stored = [e for e in STORED if e["type"] in ("memory", "model_response", "tool_result")]
    stored += [e for e in STORED if e["type"] == "approval_decided"]
    resume = replay(_run_events(stored), set())
    assert resume is not None and resume.step == 1
    # the model's call, the summary written, and the agent called as a tool
    assert resume.usage.input_tokens == 12 + 40 + 5
    assert resume.decisions["call_4"].approved is False
    assert resume.decisions["call_4"].comment == "not today"
    assert resume.decisions["call_5"].approved is True


def test_stored_events_render_in_the_cli() -> None:
    served = [
        {**e, "created_at": datetime.now(UTC).isoformat()} for e in STORED if e["type"] != "delta"
    ]
    run = {
        "id": "run_x",
        "agent": "helper",
        "agent_generation": 1,
        "status": "succeeded",
        "usage": {"input_tokens": 47, "output_tokens": 11},
    }
    console = Console(record=True, width=200)
    console.print(run_tree(run, served))
    text = console.export_text()
    assert "model scripted: 1 tool call(s)  tokens 12→3" in text
    assert "tool researcher → 'found it'" in text
    assert "waiting for approval: delete_all  delete_*" in text
    assert "denied delete_all by key_ops: not today" in text
    assert "approved send_mail by ?" in text
    assert "error model_error: upstream said 503" in text
    assert "answer: done" in text

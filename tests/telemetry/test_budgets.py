"""Budgets cap spend before it happens: under 20 concurrent runs a Budget is passed
by at most one call's worth, a run that meets it ends with reason budget_exceeded
and is charged nothing more, and a used-up budget refuses new runs. On SQLite and
on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hangar.config import Settings
from hangar.errors import BudgetExceededError
from hangar.ids import now
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec import parse_document
from hangar.store.records import RunStatus
from hangar.store.sql import SqlStore
from tests.helpers import agent, doc, queued_run, scripted_model

MAX_OUTPUT = 30
TOOL_STEP = {"toolCalls": [{"name": "current_time", "arguments": {}}]}


async def apply(runtime: Runtime, *documents: dict[str, Any]) -> None:
    for document in documents:
        resource, problems = parse_document(document)
        assert resource is not None, problems
        await runtime.store.apply_resource("default", resource)


async def test_budgets_hold_under_twenty_concurrent_runs(store: SqlStore, tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"), store=store)
    await runtime.start(workers=0)  # queue all twenty first, then let them race
    try:
        await apply(
            runtime,
            scripted_model("m", TOOL_STEP, TOOL_STEP, {"text": "done"}),
            agent("busy", "m", tools=[{"builtin": "current_time"}], maxOutputTokens=MAX_OUTPUT),
            doc("Budget", "daily", {"period": "day", "maxTokens": 1500}),
        )
        started = [
            await runtime.runs.start(
                "default", "busy", RunInput([{"role": "user", "content": "go"}])
            )
            for _ in range(20)
        ]
        runtime.worker.start(20)
        finished = await asyncio.gather(
            *(runtime.runs.wait("default", run.id, timeout=120) for run in started)
        )
        reasons = [run.reason for run in finished]
        assert "budget_exceeded" in reasons  # the budget bit
        assert set(reasons) <= {"budget_exceeded", "completed"}

        ledger = await store.usage_summary("default", ["run"])
        spent = sum(row["input_tokens"] + row["output_tokens"] for row in ledger)
        per_call = [
            (event.data["usage"]["input_tokens"] + MAX_OUTPUT)
            for run in finished
            for event in await store.list_events("default", run.id)
            if event.type == "model_response"
        ]
        assert 1500 <= spent <= 1500 + max(per_call)  # passed by at most one call's worth
        for run in finished:
            charged = next((r["calls"] for r in ledger if r["run"] == run.id), 0)
            responses = [
                e for e in await store.list_events("default", run.id) if e.type == "model_response"
            ]
            assert charged == len(responses)  # nothing charged beyond what the run recorded
            if run.reason == "budget_exceeded":
                assert "Budget 'daily' of the namespace is used up" in run.error["message"]  # type: ignore[index]
        counters = await store.budget_spent(next(iter(await _keys(store))))
        assert counters[0] == spent  # the counter and the ledger agree
        # A used-up budget refuses new runs at the door, with the budget named.
        with pytest.raises(BudgetExceededError, match="Budget 'daily'"):
            await runtime.runs.start(
                "default", "busy", RunInput([{"role": "user", "content": "x"}])
            )
    finally:
        await runtime.stop()


async def _keys(store: SqlStore) -> list[str]:
    import sqlalchemy as sa

    from hangar.store import tables

    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(tables.budget_counters.c.key, tables.budget_counters.c.reserved_tokens)
            )
        ).all()
    assert all(reserved == 0 for _, reserved in rows)  # every reservation settled
    return [key for key, _ in rows]


async def test_a_run_cost_limit_and_an_agent_budget_in_dollars(
    store: SqlStore, tmp_path: Path
) -> None:
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"), store=store)
    await runtime.start()
    try:
        prices = {"inputPerMillion": 1_000_000, "outputPerMillion": 1_000_000}  # $1 a token
        await apply(
            runtime,
            scripted_model("m", TOOL_STEP, TOOL_STEP, {"text": "done"}, pricing=prices),
            agent(
                "capped",
                "m",
                tools=[{"builtin": "current_time"}],
                limits={"maxCost": 1},
                maxOutputTokens=MAX_OUTPUT,
            ),
            agent("other", "m", maxOutputTokens=MAX_OUTPUT),
            doc("Budget", "other-monthly", {"agent": "other", "period": "month", "maxCost": 5}),
        )
        run = await runtime.runs.start(
            "default", "capped", RunInput([{"role": "user", "content": "go"}])
        )
        run = await runtime.runs.wait("default", run.id, timeout=60)
        assert (run.status.value, run.reason) == ("failed", "budget_exceeded")
        assert "over its limit of $1" in run.error["message"]  # type: ignore[index]
        assert len(await store.usage_summary("default", ["run"], run_id=run.id)) == 1
        # The agent's monthly budget: the first run spends past $5, the next is refused.
        first = await runtime.runs.start(
            "default", "other", RunInput([{"role": "user", "content": "a"}])
        )
        await runtime.runs.wait("default", first.id, timeout=60)
        with pytest.raises(BudgetExceededError, match="Budget 'other-monthly' of agent 'other'"):
            await runtime.runs.start(
                "default", "other", RunInput([{"role": "user", "content": "b"}])
            )
        await runtime.runs.start("default", "capped", RunInput([{"role": "user", "content": "c"}]))
    finally:
        await runtime.stop()


async def test_what_a_dead_workers_call_reserved_is_given_back_when_its_run_is_taken_over(
    store: SqlStore, tmp_path: Path
) -> None:
    """A worker killed during a model call leaves the call's estimate reserved; the
    worker that takes the run over gives it back. Had the old worker only stalled, its
    late settle counts what its call spent and gives nothing back twice."""
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"), store=store)
    await runtime.start(workers=0)
    try:
        await apply(
            runtime,
            scripted_model("m", {"text": "done"}),
            agent("a", "m", maxOutputTokens=MAX_OUTPUT),
            doc("Budget", "daily", {"period": "day", "maxTokens": 100_000}),
        )
        lines = tuple(a.line for a in await runtime.budgets.applying("default", "a"))
        gone = now() - timedelta(minutes=1)
        run = await store.create_run(
            queued_run(
                agent="a",
                status=RunStatus.RUNNING,
                worker="gone/0",
                started_at=gone,
                lease_expires_at=gone,
            )
        )
        await store.append_event(run.id, "default", "run_started", {"worker": "gone"})
        assert await store.reserve_budget(lines, 500, 0.0, run_id=run.id) is None  # its call
        runtime.worker.start(1)
        done = await runtime.runs.wait("default", run.id, timeout=60)
        assert done.status is RunStatus.SUCCEEDED
        called = sum(
            e.data["usage"]["input_tokens"] + e.data["usage"]["output_tokens"]
            for e in await store.list_events("default", run.id)
            if e.type == "model_response"
        )
        assert await _keys(store) == [lines[0].key]  # nothing left reserved
        assert (await store.budget_spent(lines[0].key))[0] == called

        await store.settle_budget(lines, 500, 0.0, 42, 0.0, run_id=run.id)  # the old worker
        assert await _keys(store) == [lines[0].key]  # still nothing reserved, not -500
        assert (await store.budget_spent(lines[0].key))[0] == called + 42
    finally:
        await runtime.stop()

"""Runs over REST: start one (wait, stream, or 202 and poll), read it, its events, cancel it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hangar.errors import RunNotFoundError, SessionNotFoundError
from hangar.gateway.auth import ApproveKey, ReadOrRunKey, RunKey, RuntimeDep, own, visible
from hangar.gateway.sse import SSE_HEADERS, event_frame
from hangar.ids import new_id
from hangar.runtime.bus import BusItem
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.store.records import ApiKey, RunRecord, RunStatus

router = APIRouter(tags=["runs"])
MAX_SEQ = 2**31 - 1
"""The largest event sequence number a cursor may name."""


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | None = Field(default=None, description="A user message.")
    messages: list[dict[str, Any]] | None = Field(
        default=None, description="OpenAI-format messages, instead of `input`."
    )
    tools: list[dict[str, Any]] = Field(
        default_factory=list, description="OpenAI-format tools the caller runs itself."
    )
    stream: bool = Field(default=False, description="Answer with the run's events over SSE.")
    wait: bool = Field(default=True, description="Answer when the run ends; false: 202 at once.")
    timeout: float = Field(default=600, gt=0, le=86_400, description="Seconds to wait.")
    priority: int = Field(
        default=0, ge=-100, le=100, description="Higher runs first; equal ones oldest first."
    )
    session: str | None = Field(
        default=None, description="A session of this agent: the run is its next turn."
    )
    user: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Your id for the end user the run serves: whose long-term memory it uses.",
    )

    @model_validator(mode="after")
    def _one_input(self) -> RunRequest:
        if (self.input is None) == (self.messages is None):
            raise ValueError("give exactly one of 'input' or 'messages'")
        return self

    def run_input(self, key: ApiKey) -> RunInput:
        messages = self.messages or [{"role": "user", "content": self.input}]
        return RunInput(
            messages=messages,
            tools=self.tools,
            priority=self.priority,
            session=self.session,
            user=self.user,
            key_id=key.id,
        )


async def readable_run(rt: Runtime, key: ApiKey, run_id: str) -> RunRecord:
    """The run, if this key may see it (a runner sees only the runs it started)."""
    run = await rt.runs.get(key.namespace, run_id)
    if not visible(key, run.key_id):
        raise RunNotFoundError(
            f"run {run_id!r} not found in namespace {key.namespace!r}", details={"run": run_id}
        )
    return run


@router.post("/v1/agents/{agent}/runs", status_code=200)
async def start_run(agent: str, body: RunRequest, key: RunKey, rt: RuntimeDep) -> Any:
    if body.session is not None:  # a turn sees the session's history: the key must see it
        session = await rt.sessions.get(key.namespace, body.session)
        if not visible(key, session.key_id):
            raise SessionNotFoundError(
                f"session {body.session!r} not found in namespace {key.namespace!r}",
                details={"session": body.session},
            )
    if body.stream:
        queue, run = await subscribed_start(rt, key.namespace, agent, body.run_input(key))
        return StreamingResponse(
            _stream(rt, key.namespace, run.id, queue=queue),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, "X-Hangar-Run-Id": run.id},
        )
    run = await rt.runs.start(key.namespace, agent, body.run_input(key))
    if not body.wait:
        return JSONResponse(
            run.to_dict(), status_code=202, headers={"Location": f"/v1/runs/{run.id}"}
        )
    try:
        run = await rt.runs.wait(key.namespace, run.id, timeout=body.timeout)
    except TimeoutError:
        run = await rt.runs.get(key.namespace, run.id)
        return JSONResponse(
            run.to_dict(), status_code=202, headers={"Location": f"/v1/runs/{run.id}"}
        )
    return run.to_dict()


async def subscribed_start(
    rt: Runtime, namespace: str, agent: str, run_input: RunInput
) -> tuple[asyncio.Queue[BusItem], RunRecord]:
    """Start a run with a subscription opened before it exists, so no delta is missed.
    The caller owns the queue and must close it (``_stream`` does)."""
    run_id = new_id("run")
    queue = rt.bus.open(run_id)
    try:
        run = await rt.runs.start(namespace, agent, run_input, run_id=run_id)
    except BaseException:
        rt.bus.close(run_id, queue)
        raise
    return queue, run


async def _stream(
    rt: Runtime,
    namespace: str,
    run_id: str,
    after: int = 0,
    queue: asyncio.Queue[BusItem] | None = None,
) -> AsyncIterator[str]:
    async for item in follow_items(rt, namespace, run_id, queue, after):
        yield event_frame(item)


async def follow_items(
    rt: Runtime,
    namespace: str,
    run_id: str,
    queue: asyncio.Queue[BusItem] | None = None,
    after: int = 0,
) -> AsyncIterator[BusItem]:
    """Follow a run, closing a pre-opened subscription when the stream ends."""
    try:
        async for item in rt.runs.follow(namespace, run_id, after=after, queue=queue):
            yield item
    finally:
        if queue is not None:
            rt.bus.close(run_id, queue)


@router.get("/v1/runs")
async def list_runs(
    key: ReadOrRunKey,
    rt: RuntimeDep,
    agent: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, Any]:
    """The namespace's runs, newest first (a runner key: the runs it started)."""
    runs = await rt.runs.recent(key.namespace, agent=agent, limit=limit, key_id=own(key))
    return {"items": [run.to_dict() for run in runs]}


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, key: ReadOrRunKey, rt: RuntimeDep) -> dict[str, Any]:
    return (await readable_run(rt, key, run_id)).to_dict()


@router.get("/v1/runs/{run_id}/events", response_model=None)
async def run_events(
    run_id: str,
    key: ReadOrRunKey,
    rt: RuntimeDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    follow: bool = False,
    accept: Annotated[str | None, Header()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> dict[str, Any] | StreamingResponse:
    """The run's events as JSON, or followed live over SSE (``?follow=true`` or
    ``Accept: text/event-stream``); ``Last-Event-ID`` resumes a dropped stream."""
    if follow or (accept and "text/event-stream" in accept):
        if last_event_id and last_event_id.isdigit() and len(last_event_id) < 10:
            after = max(after, int(last_event_id))
        await readable_run(rt, key, run_id)
        return StreamingResponse(
            _stream(rt, key.namespace, run_id, after),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
        )
    await readable_run(rt, key, run_id)
    events = await rt.runs.events(key.namespace, run_id, after=after)
    return {"items": [event.to_dict() for event in events]}


@router.post("/v1/runs/{run_id}/cancel")
async def cancel_run(run_id: str, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    await readable_run(rt, key, run_id)
    return (await rt.runs.cancel(key.namespace, run_id)).to_dict()


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    call_id: str | None = Field(
        default=None, alias="callId", description="One held tool call; default: all of them."
    )
    comment: str = Field(default="", max_length=2000, description="Shown to the model on deny.")


@router.get("/v1/approvals")
async def approvals_inbox(
    key: ApproveKey, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    """Every tool call of the namespace that waits for a decision, oldest run first:
    the approver's inbox."""
    waiting = await rt.runs.recent(key.namespace, limit=limit, status=RunStatus.WAITING_APPROVAL)
    items = []
    for run in reversed(waiting):
        for call in await rt.runs.pending_approvals(key.namespace, run.id):
            items.append({"run": run.id, "agent": run.agent, **call.to_json()})
    return {"items": items}


@router.get("/v1/runs/{run_id}/approvals")
async def pending_approvals(run_id: str, key: ApproveKey, rt: RuntimeDep) -> dict[str, Any]:
    """Tool calls of the run that wait for a decision."""
    await rt.runs.get(key.namespace, run_id)
    pending = await rt.runs.pending_approvals(key.namespace, run_id)
    return {"items": [call.to_json() for call in pending]}


@router.post("/v1/runs/{run_id}/approve")
async def approve(
    run_id: str, key: ApproveKey, rt: RuntimeDep, body: Decision | None = None
) -> dict[str, Any]:
    """Let held tool calls run; once none is pending the run resumes (on any worker)."""
    return await _decide(rt, key, run_id, True, body or Decision())


@router.post("/v1/runs/{run_id}/deny")
async def deny(
    run_id: str, key: ApproveKey, rt: RuntimeDep, body: Decision | None = None
) -> dict[str, Any]:
    """Refuse held tool calls: the model is told, with the comment, and the run goes on."""
    return await _decide(rt, key, run_id, False, body or Decision())


async def _decide(
    rt: Runtime, key: ApiKey, run_id: str, approve: bool, body: Decision
) -> dict[str, Any]:
    run = await rt.runs.decide(
        key.namespace, run_id, approve, by=_who(key), call_id=body.call_id, comment=body.comment
    )
    return run.to_dict()


def _who(key: ApiKey) -> str:
    return f"key {key.name} ({key.prefix}…)"


@router.get("/v1/runs/{run_id}/trace")
async def run_trace(run_id: str, key: ReadOrRunKey, rt: RuntimeDep) -> dict[str, Any]:
    """The run's trace as stored: every span (gateway, run, model and tool calls, store
    writes, agents it called) of this namespace, with parent links, GenAI attributes
    and times."""
    run = await readable_run(rt, key, run_id)
    if run.trace_id is None:
        return {"traceId": None, "spans": []}
    await rt.telemetry.flush()
    spans = await rt.traces.list_spans(key.namespace, run.trace_id)
    return {"traceId": run.trace_id, "spans": [span.to_dict() for span in spans]}

"""What the front doors ask of the runtime: start a run, wait for it, follow its
events, cancel it. Every call is scoped to one namespace."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from hangar.errors import (
    AgentNotFoundError,
    InvalidRequestError,
    RunNotActiveError,
    RunNotFoundError,
)
from hangar.ids import new_id, now
from hangar.memory.users import check_user
from hangar.models.messages import Message
from hangar.runtime.bus import RESYNC, BusItem, EventBus
from hangar.runtime.events import (
    ApprovalDecided,
    ApprovalRequested,
    EventType,
    HeldCall,
    RunFinished,
    parse,
)
from hangar.runtime.sessions import Sessions
from hangar.runtime.worker import Worker
from hangar.spec.agent import Agent
from hangar.spec.quota import Quota
from hangar.store.base import EventLog, ResourceStore, RunQueue
from hangar.store.records import ClaimRequest, RunEvent, RunRecord, RunStatus
from hangar.telemetry import Telemetry, genai
from hangar.telemetry.budgets import Budgets


class _RunsStore(RunQueue, EventLog, ResourceStore, Protocol):
    """What the run service uses of the store: the queue, runs' events, agents."""


FOLLOW_POLL_SECONDS = 0.5
FOLLOW_POLL_MAX_SECONDS = 5.0
"""A follower (a waiting request, a stream) hears of its run through the bus: at once
for runs executing in this process, and through the store's notices on PostgreSQL.
It reads the store itself only after this long without news, for runs executing
where no notice comes from (another process on SQLite): first after
``FOLLOW_POLL_SECONDS``, then twice as long each time the read found nothing new, up
to ``FOLLOW_POLL_MAX_SECONDS``. (A read every half second from each of a thousand
waiting requests took half of the server's time.)"""


def _longer(poll: float) -> float:
    return min(poll * 2, FOLLOW_POLL_MAX_SECONDS)


CANCEL_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class RunInput:
    """A run's input: OpenAI-format messages, and tools the caller runs itself."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    priority: int = 0
    """Higher runs first (-100 to 100); equal priorities run oldest first."""
    session: str | None = None
    """A session of the same agent: the run is its next turn and sees the ones before."""
    user: str | None = None
    """The end user the run serves, by the caller's id for them: whose memory it uses."""
    key_id: str | None = None
    """The API key asking for it (None: a trigger, a schedule)."""

    def validate(self) -> None:
        if self.user is not None:
            check_user(self.user)
        if not -100 <= self.priority <= 100:
            raise InvalidRequestError(f"priority must be from -100 to 100, got {self.priority}")
        if not self.messages:
            raise InvalidRequestError("a run needs at least one message")
        for i, message in enumerate(self.messages):
            Message.from_openai(message, f"messages[{i}]")
        for i, tool in enumerate(self.tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequestError(
                    f"tools[{i}] must be {{'type': 'function', 'function': {{'name': …}}}}"
                )


class RunService:
    def __init__(
        self,
        store: _RunsStore,
        bus: EventBus,
        worker: Worker | None,
        telemetry: Telemetry,
        budgets: Budgets,
        sessions: Sessions,
    ) -> None:
        self.store = store
        self.bus = bus
        self.worker = worker
        self.telemetry = telemetry
        self.budgets = budgets
        self.sessions = sessions

    async def start(
        self, namespace: str, agent: str, run_input: RunInput, *, run_id: str | None = None
    ) -> RunRecord:
        """Queue a run of the agent's current generation. Pass ``run_id`` to subscribe to
        its events before it exists."""
        run_input.validate()
        stored = await self.store.cached_resource(namespace, Agent.KIND, agent)
        if stored is None:
            raise AgentNotFoundError(
                f"agent {agent!r} not found in namespace {namespace!r}",
                hint="list agents with `hangar get agents`; apply one with `hangar apply -f`",
                details={"agent": agent, "namespace": namespace},
            )
        if run_input.session is not None:
            session = await self.sessions.get(namespace, run_input.session)
            if session.agent != agent:
                raise InvalidRequestError(
                    f"session {session.id!r} belongs to agent {session.agent!r}, not {agent!r}",
                    hint=f"start the run with agent {session.agent!r}, or open a new session",
                    details={"session": session.id, "agent": session.agent},
                )
        await self.budgets.check(namespace, agent)  # a used-up budget starts nothing
        run_id = run_id or new_id("run")
        # The run's trace: the caller's (a gateway request continuing a traceparent), or
        # a new one; the worker that takes the run continues it.
        with self.telemetry.tracer.start_as_current_span(
            f"enqueue_run {agent}",
            kind=SpanKind.PRODUCER,
            attributes={genai.RUN_ID: run_id, genai.NAMESPACE: namespace},
        ):
            run = RunRecord(
                id=run_id,
                namespace=namespace,
                agent=agent,
                agent_generation=stored.generation,
                status=RunStatus.QUEUED,
                input={"messages": run_input.messages, "tools": run_input.tools},
                created_at=now(),
                trace_context=Telemetry.current_traceparent(),
                priority=run_input.priority,
                session_id=run_input.session,
                user=run_input.user,
                key_id=run_input.key_id,
            )
            claim = await self._hand_off(run_id, namespace, agent)
            if claim is None:
                await self.store.create_run(run)
            else:
                run = await self._create_claimed(run, claim)
        if claim is None:
            self.bus.wake_workers()
        return run

    async def _hand_off(self, run_id: str, namespace: str, agent: str) -> ClaimRequest | None:
        """A claim for the new run if this process's worker takes it at once
        (``Worker.hand_off``); never past a limit on the namespace's running runs, which
        only the queue's claim counts."""
        if self.worker is None or self.worker.settings.namespace_max_running is not None:
            return None
        if await self.store.cached_resources(namespace, Quota.KIND):
            return None
        return self.worker.hand_off(run_id, namespace, agent)

    async def _create_claimed(self, run: RunRecord, claim: ClaimRequest) -> RunRecord:
        """Create the run held under ``claim``, as a claim would have left it, and give
        it to this process's worker."""
        assert self.worker is not None
        stamp = run.created_at
        held = dataclasses.replace(
            run,
            status=RunStatus.RUNNING,
            worker=claim.worker,
            started_at=stamp,
            lease_expires_at=stamp + timedelta(seconds=claim.lease_seconds),
            last_seq=1,
        )
        try:
            await self.store.create_run(held, [(EventType.RUN_STARTED.value, claim.started or {})])
        except BaseException:
            self.worker.release(claim, run.id)
            raise
        self.worker.adopt(held, claim)
        return held

    async def recent(
        self,
        namespace: str,
        *,
        agent: str | None = None,
        limit: int = 50,
        key_id: str | None = None,
        status: RunStatus | None = None,
    ) -> list[RunRecord]:
        """Newest first; only one agent's, one key's or one status's when given."""
        return await self.store.list_runs(
            namespace, agent=agent, limit=limit, key_id=key_id, status=status
        )

    async def events(self, namespace: str, run_id: str, *, after: int = 0) -> list[RunEvent]:
        """The run's stored events after ``after``, in order."""
        return await self.store.list_events(namespace, run_id, after=after)

    async def get(self, namespace: str, run_id: str) -> RunRecord:
        run = await self.store.get_run(namespace, run_id)
        if run is None:
            raise RunNotFoundError(
                f"run {run_id!r} not found in namespace {namespace!r}",
                details={"run": run_id},
            )
        return run

    async def wait(self, namespace: str, run_id: str, timeout: float | None = None) -> RunRecord:
        """Wait until the run is finished or waits for a person (or ``timeout`` passes)."""
        settled = (EventType.RUN_FINISHED, EventType.APPROVAL_REQUESTED)
        poll = FOLLOW_POLL_SECONDS
        with self.bus.subscribe(run_id) as queue:
            async with asyncio.timeout(timeout):
                while True:
                    run = await self.get(namespace, run_id)
                    if run.status.finished or run.status == RunStatus.WAITING_APPROVAL:
                        return run
                    try:
                        async with asyncio.timeout(poll):
                            while (await queue.get()).type not in (*settled, RESYNC):
                                pass
                    except TimeoutError:
                        poll = _longer(poll)

    async def pending_approvals(self, namespace: str, run_id: str) -> list[HeldCall]:
        """The held tool calls of a waiting run that no one has decided yet."""
        pending: dict[str, HeldCall] = {}
        for stored in await self.store.list_events(namespace, run_id):
            event = parse(stored.type, stored.data)
            if isinstance(event, ApprovalRequested):
                pending = {call.id: call for call in event.calls}
            elif isinstance(event, ApprovalDecided):
                pending.pop(event.id, None)
        return list(pending.values())

    async def decide(
        self,
        namespace: str,
        run_id: str,
        approve: bool,
        *,
        by: str,
        call_id: str | None = None,
        comment: str = "",
    ) -> RunRecord:
        """Approve or deny held tool calls (one, or all that are pending). Once none is
        left the run goes back to the queue and any worker, in any process, resumes it."""
        run = await self.get(namespace, run_id)
        if run.status != RunStatus.WAITING_APPROVAL:
            raise RunNotActiveError(
                f"run {run_id!r} is {run.status.value}, not waiting for an approval",
                details={"status": run.status.value},
            )
        pending = await self.pending_approvals(namespace, run_id)
        if call_id is not None:
            chosen = [c for c in pending if c.id == call_id]
            if not chosen:
                raise InvalidRequestError(
                    f"run {run_id!r} has no pending tool call {call_id!r}",
                    hint=f"pending: {', '.join(c.id for c in pending) or 'none'}",
                    details={"pending": [c.id for c in pending]},
                )
        else:
            chosen = pending
        for call in chosen:
            event = await self.store.append_event(
                run.id,
                namespace,
                EventType.APPROVAL_DECIDED.value,
                ApprovalDecided(call.id, call.name, approve, by, comment).to_json(),
            )
            self.bus.publish(BusItem(run.id, event.seq, event.type, event.data))
        if len(chosen) == len(pending) and await self.store.requeue_run(namespace, run_id):
            self.bus.wake_workers()
        return await self.get(namespace, run_id)

    async def follow(
        self,
        namespace: str,
        run_id: str,
        *,
        after: int = 0,
        queue: asyncio.Queue[BusItem] | None = None,
    ) -> AsyncIterator[BusItem]:
        """Every stored event after ``after``, then live ones, until the run finishes.

        Stored events come exactly once and in order, whichever process runs the
        run. Transient deltas come only from runs in this process, and only in
        their true place among stored events: pass a ``queue`` subscribed before the
        run was started to get all of them; a late follower gets those after the
        next stored event it sees live.
        """
        await self.get(namespace, run_id)
        last = after
        fresh = queue is not None
        synced = fresh
        with nullcontext(queue) if queue is not None else self.bus.subscribe(run_id) as q:
            if not fresh:
                async for caught in self._catch_up(namespace, run_id, last):
                    last = caught.seq
                    yield caught
                    if caught.type == EventType.RUN_FINISHED:
                        return
            poll = FOLLOW_POLL_SECONDS
            while True:
                item: BusItem | None = None
                try:
                    async with asyncio.timeout(poll):
                        item = await q.get()
                except TimeoutError:
                    pass  # nothing live: the run may execute in a process without notices
                if item is None or (item.remote and (item.seq == 0 or item.seq > last)):
                    before = last
                    async for caught in self._catch_up(namespace, run_id, last):
                        last = caught.seq
                        yield caught
                        if caught.type == EventType.RUN_FINISHED:
                            return
                    poll = _longer(poll) if item is None and last == before else FOLLOW_POLL_SECONDS
                    continue
                if item.remote:
                    continue  # already read
                if item.seq == 0:
                    if synced:
                        yield item
                    continue
                if item.seq <= last:
                    synced = synced or item.seq == last
                    continue
                if item.seq > last + 1:
                    async for caught in self._catch_up(namespace, run_id, last, item.seq - 1):
                        last = caught.seq
                        yield caught
                last, synced = item.seq, True
                yield item
                if item.type == EventType.RUN_FINISHED:
                    return

    async def _catch_up(
        self, namespace: str, run_id: str, after: int, upto: int | None = None
    ) -> AsyncIterator[BusItem]:
        for event in await self.store.list_events(namespace, run_id, after=after):
            if upto is not None and event.seq > upto:
                return
            yield BusItem(run_id, event.seq, event.type, event.data)

    async def cancel(self, namespace: str, run_id: str) -> RunRecord:
        found = await self.store.request_cancel(namespace, run_id)
        if found is None:
            raise RunNotFoundError(f"run {run_id!r} not found in namespace {namespace!r}")
        run, ended_now = found
        if run.status.finished and run.reason != "cancelled":
            raise RunNotActiveError(
                f"run {run_id!r} already finished ({run.status.value})",
                details={"status": run.status.value},
            )
        if run.status == RunStatus.CANCELLED:
            if ended_now:
                # Cancelled while queued or waiting: no worker will record its end.
                ended = RunFinished(run.status.value, run.reason or "", run.usage)
                event = await self.store.append_event(
                    run.id, namespace, ended.TYPE.value, ended.to_json()
                )
                self.bus.publish(BusItem(run.id, event.seq, event.type, event.data))
            return run
        if self.worker is not None and self.worker.cancel_local(run_id):
            try:
                return await self.wait(namespace, run_id, timeout=CANCEL_WAIT_SECONDS)
            except TimeoutError:
                # Still winding down (a tool that ignores cancellation): the cancel
                # is recorded; the caller sees the run as it is and can poll it.
                return await self.get(namespace, run_id)
        return run

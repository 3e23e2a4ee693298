"""Workers: claim queued runs from the store and drive them through the agent loop.

Workers hold no state a run needs: everything is in the store, so any worker in
any process can take any run. Each run's events are stored before the loop goes
on, then fanned out to live subscribers through the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from opentelemetry.trace import StatusCode

from hangar.admission import Admission
from hangar.config import Settings
from hangar.errors import (
    ClientError,
    ConfigurationError,
    HangarError,
    LeaseLostError,
    ModelProviderError,
    RunCancelled,
    ToolError,
)
from hangar.ids import new_id, now
from hangar.memory.history import fit, model_summariser, turns_of
from hangar.memory.index import index_for
from hangar.memory.knowledge import Knowledge
from hangar.memory.retrieval import question, retrieve
from hangar.memory.users import UserMemories, recalled_context
from hangar.models.messages import Message, ToolDefinition
from hangar.models.pricing import priced
from hangar.runtime.bus import BusItem, EventBus
from hangar.runtime.events import (
    ApprovalRequested,
    Event,
    EventType,
    Final,
    HeldCall,
    KnowledgeFound,
    MemoryLoaded,
    ModelRequested,
    ModelResponded,
    Recalled,
    RunError,
    RunFinished,
    RunStarted,
    StopReason,
    ToolResult,
    parse,
)
from hangar.runtime.loop import LoopInput, Outcome, run_loop
from hangar.runtime.queue import FairShare
from hangar.runtime.replay import replay
from hangar.runtime.resolve import AgentSpecs, ModelCache, agent_tools, namespace_policies
from hangar.runtime.sandboxes import RunSandbox
from hangar.runtime.sessions import conversation
from hangar.sandbox.manager import SandboxManager
from hangar.spec.agent import Agent, AgentSpec
from hangar.store.base import Store
from hangar.store.records import (
    ClaimRequest,
    LedgerEntry,
    RunEvent,
    RunRecord,
    RunStatus,
)
from hangar.store.secrets import SecretBox, SecretResolver
from hangar.telemetry import Telemetry, genai
from hangar.telemetry.budgets import Budgets, RunBudget
from hangar.telemetry.metrics import UNKNOWN_TOOL, Metrics
from hangar.telemetry.tracing import CURRENT_NAMESPACE
from hangar.tools.base import ToolContext
from hangar.tools.mcp import MCPHub
from hangar.usage import Usage

log = logging.getLogger("hangar.runtime")

POLL_SECONDS = 1.0
CANCEL_CHECK_SECONDS = 1.0
STATISTICS_SECONDS = 2.0
"""How often a worker process asks whether the queue's statistics are stale."""
HOLD_SECONDS = 0.05
"""How long a model request is held back to be stored with the model's response (one
statement for both); a slower model gets its request stored on its own after this."""

Held = list[tuple[str, dict[str, Any]]]


class _HeldEvents:
    """A run's events held back to be stored with its next one, in its statement: a
    model request with the response (a request lost with a worker costs nothing, the
    call is made again), the loop's ``final`` with the run's end (the answer is in the
    response). A write saved per model call.

    A held request does not wait for a slow model: after ``HOLD_SECONDS`` it is stored
    on its own (``store``), so followers see the call start, and a worker killed
    during the call leaves it recorded."""

    def __init__(self, store: Callable[[Held], Coroutine[Any, Any, None]]) -> None:
        self._store = store
        self._events: Held = []
        self._timer: asyncio.TimerHandle | None = None
        self._storing: asyncio.Task[None] | None = None

    def hold(self, type: EventType, data: dict[str, Any], *, at_most: float | None) -> None:
        """Hold an event; ``at_most`` seconds before it is stored anyway (None: until the
        next event)."""
        self._events.append((type.value, data))
        if at_most is not None and self._timer is None and self._storing is None:
            self._timer = asyncio.get_running_loop().call_later(at_most, self._store_now)

    def _store_now(self) -> None:
        self._timer = None
        events, self._events = self._events, []
        self._storing = asyncio.create_task(self._store(events), name="hangar-held-events")

    async def take(self) -> Held:
        """The events still held, to be stored now with the caller's (in order after any
        stored on their own, which this waits for: their failure is the caller's)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        storing, self._storing = self._storing, None
        if storing is not None:
            await storing
        events, self._events = self._events, []
        return events


def caller_tools(raw: list[dict[str, Any]]) -> tuple[ToolDefinition, ...]:
    out = []
    for item in raw:
        fn = item.get("function", item)
        out.append(
            ToolDefinition(
                name=fn["name"],
                description=fn.get("description", ""),
                parameters=fn.get("parameters") or {"type": "object", "properties": {}},
            )
        )
    return tuple(out)


@dataclass
class _Spent:
    """Usage and time so far, kept outside the loop so a timeout or cancel still
    reports them."""

    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.perf_counter)
    model_ms: float = 0.0
    tool_ms: dict[int, float] = field(default_factory=dict)
    """Per step, the longest tool call: calls of one step run side by side."""
    citations: list[dict[str, Any]] = field(default_factory=list)
    """Knowledge that reached the model (retrieved, or returned by a tool), in order."""

    def note(self, event: Event | None) -> None:
        if isinstance(event, (ToolResult, KnowledgeFound)):
            for citation in event.citations:
                if citation not in self.citations:
                    self.citations.append(citation)
        if isinstance(event, ModelResponded):
            self.model_ms += event.duration_ms
        elif isinstance(event, ToolResult):
            self.tool_ms[event.step] = max(self.tool_ms.get(event.step, 0.0), event.duration_ms)

    def timing(self, run: RunRecord) -> dict[str, float]:
        """Where the run's time went: the model, tools, and Hangar itself (the rest:
        store, queue hand-offs, serialisation, the loop); queued before a worker took it."""
        total = (time.perf_counter() - self.started) * 1000
        tools = sum(self.tool_ms.values())
        timing = {
            "total_ms": round(total, 3),
            "model_ms": round(self.model_ms, 3),
            "tools_ms": round(tools, 3),
            "hangar_ms": round(max(total - self.model_ms - tools, 0.0), 3),
        }
        if run.started_at is not None:
            timing["queued_ms"] = round(
                max((run.started_at - run.created_at).total_seconds() * 1000, 0.0), 3
            )
        return timing


def _parent_lost(run: RunRecord, usage: Usage) -> Outcome:
    return Outcome(
        RunStatus.CANCELLED,
        StopReason.PARENT_LOST,
        usage,
        {},
        RunError(
            StopReason.PARENT_LOST.value,
            f"its parent run {run.parent_id} lost its worker while this run "
            "ran; the parent, resumed, was told the call was interrupted, so this run "
            "was stopped rather than finished for no one",
        ),
    )


def _cancelled(usage: Usage) -> Outcome:
    return Outcome(
        RunStatus.CANCELLED,
        StopReason.CANCELLED,
        usage,
        {},
        RunError(StopReason.CANCELLED.value, "the run was cancelled"),
    )


class Worker:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        settings: Settings,
        sandboxes: SandboxManager | None = None,
        hub: MCPHub | None = None,
        telemetry: Telemetry | None = None,
        metrics: Metrics | None = None,
        budgets: Budgets | None = None,
        knowledge: Knowledge | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.store = store
        self.admission = admission or Admission(
            settings.resolved_admission_file, home=settings.home
        )
        secrets = (
            hub.secrets if hub else SecretResolver(store, SecretBox.from_environment(settings.home))
        )
        self.knowledge = knowledge or Knowledge(
            store, index_for(settings), admission=self.admission, secrets=secrets
        )
        self.memories = UserMemories(store, self.knowledge.local)
        self.budgets = budgets or Budgets(store)
        self.telemetry = telemetry or Telemetry(None, "off")
        self.metrics = metrics or Metrics()
        self.sandboxes = sandboxes or SandboxManager(admission=self.admission)
        self.hub = hub or MCPHub(store, secrets, self.admission)
        self.bus = bus
        self.settings = settings
        self.models = ModelCache(store, settings, self.admission, secrets)
        self.agents = AgentSpecs(store)
        self.queue = FairShare(store)
        self.id = f"{socket.gethostname()}-{os.getpid()}"
        self.running: dict[str, asyncio.Task[RunRecord | None]] = {}
        self.holders: dict[str, str] = {}
        """Run id to the worker name that holds its lease here (renewed by the heartbeat)."""
        self._last_busy = time.monotonic()
        self._ending: set[str] = set()
        """Runs whose end is being stored: too late to cancel (``cancel_local``)."""
        self._slots: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------

    def start(self, concurrency: int) -> None:
        self.bus.doorbell.limit = concurrency
        for i in range(concurrency):
            self._slots.append(asyncio.create_task(self._slot(i), name=f"hangar-worker-{i}"))
        self._slots.append(asyncio.create_task(self._heartbeat(), name="hangar-heartbeat"))
        self._slots.append(asyncio.create_task(self._statistics(), name="hangar-statistics"))

    async def _statistics(self) -> None:
        """Keep the database's picture of the queue current, so its plans for the claim
        follow the queue's growth (``Store.refresh_queue_statistics``)."""
        while True:
            await asyncio.sleep(STATISTICS_SECONDS)
            try:
                if await self.store.refresh_queue_statistics():
                    log.info("the runs table's statistics were stale; analysed it")
            except Exception:
                log.exception("refreshing the queue's statistics failed; retrying")

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs held here, a third of a lease apart."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("renewing run leases failed; retrying")

    async def renew_leases(self) -> set[str]:
        """Renew the leases of the runs held here once; returns those found taken over
        (this process stalled past a lease), which are stopped here at once (their
        writes are refused anyway: the store checks the holder)."""
        held = dict(self.holders)
        renewed = await self.store.renew_leases(held, self.settings.lease_seconds)
        lost = set()
        for run_id in set(held) - renewed:
            self.queue.ended(run_id)  # taken over, or ended here or elsewhere
            # Not renewed as it ended here meanwhile (its end stored, its slot not yet
            # back to forget it): nothing was taken over.
            task = self.running.get(run_id)
            if task is None or task.done() or run_id in self._ending:
                continue
            if self.holders.get(run_id) == held[run_id]:
                log.warning("run %s was taken over by another worker; stopping it", run_id)
                self.cancel_local(run_id)
                lost.add(run_id)
        return lost

    async def stop(self) -> None:
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        self._slots.clear()

    def _claim_request(self, index: int) -> ClaimRequest:
        return ClaimRequest(
            f"{self.id}/{index}",
            self.settings.lease_seconds,
            self.settings.namespace_max_running,
            started={"worker": self.id},
        )

    async def _slot(self, index: int) -> None:
        claim = self._claim_request(index)
        run: RunRecord | None = None
        while True:
            if run is None:
                try:
                    run = await self.queue.claim(claim)
                except Exception:
                    log.exception("claiming a run failed; retrying")
                if run is None:
                    await self.bus.doorbell.wait(POLL_SECONDS)
                    continue
            run = await self._take(run, claim)

    async def _take(self, run: RunRecord, claim: ClaimRequest) -> RunRecord | None:
        """Execute a claimed run to its end; returns the slot's next run when its end
        claimed one (``Store.finish_and_claim``)."""
        resumed = run.last_seq > 1  # its run_started, stored by the claim, is last
        started = RunStarted(self.id, resumed)
        self.bus.publish(BusItem(run.id, run.last_seq, started.TYPE.value, started.to_json()))
        if run.parent_id is not None:
            # A child run is never queued: it runs inline in its parent's task. Claimed,
            # its lease ran out with its parent's worker; finishing it would spend for
            # no one (its parent takes the call as interrupted, and may make it again).
            log.warning("run %s: its parent %s lost its worker; stopping it", run.id, run.parent_id)
            spent = replay(await self.store.list_events(run.namespace, run.id), set())
            outcome = _parent_lost(run, run.usage if spent is None else spent.usage)
            await self.budgets.release(run.id)
            try:
                return await self._finish(run, outcome, then=claim)
            except LeaseLostError:
                return None
        task = asyncio.create_task(
            self.execute(run, resumed=resumed, then=claim), name=f"run-{run.id}"
        )
        self.running[run.id] = task
        self._last_busy = time.monotonic()
        self.holders[run.id] = run.worker or ""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()  # this slot is stopping: take the run down with it
                raise
            if task.cancelled():
                # Cancelled before ``execute`` could catch it (before its first
                # step): the run must still end, recorded as cancelled.
                with contextlib.suppress(LeaseLostError):  # unless it ended after all
                    await self._finish(run, _cancelled(Usage()))
            return None
        finally:
            self.running.pop(run.id, None)
            self.holders.pop(run.id, None)
            self._last_busy = time.monotonic()

    def idle_seconds(self) -> float:
        """How long this process has had no run to execute (0 while it has one)."""
        return 0.0 if self.running else time.monotonic() - self._last_busy

    def cancel_local(self, run_id: str) -> bool:
        """Cancel a run executing in this process at once; False if it runs elsewhere.
        A run whose end is being stored ends as it was going to: cancelled then, the
        end would be stored twice, and the next run its statement claimed, lost."""
        task = self.running.get(run_id)
        if task is None:
            return False
        if run_id not in self._ending:
            task.cancel()
        return True

    # --- one run ------------------------------------------------------------------------

    async def record(
        self,
        run: RunRecord,
        type: EventType,
        data: dict[str, Any],
        *,
        fenced: bool = True,
        ledger: LedgerEntry | None = None,
        before: Sequence[tuple[str, dict[str, Any]]] = (),
    ) -> None:
        """Store an event (with a model call's ledger line), after the held-back events
        ``before``, then publish them. ``fenced``: only while this worker holds the run
        (a parked run is held by no one)."""
        event = await self.store.append_event(
            run.id,
            run.namespace,
            type.value,
            data,
            holder=run.worker if fenced else None,
            ledger=ledger,
            before=before,
        )
        self._publish_last(run, event.seq, [*before, (event.type, event.data)])

    async def execute(
        self,
        run: RunRecord,
        *,
        resumed: bool | None = None,
        then: ClaimRequest | None = None,
    ) -> RunRecord | None:
        """Drive one claimed run to a final state; never raises for the run's own failures.
        ``resumed`` is given when its ``run_started`` event was stored with its claim
        (None: it is stored here, a child run's say). With ``then``, the run's end
        claims the slot's next run, returned (when nothing follows the end: a run that
        learns about its user does that first). Its span continues the trace the run
        was started in (a child run's, the calling tool's span, which is current
        already)."""
        try:
            return await self._execute_traced(run, resumed, then)
        finally:
            self._ending.discard(run.id)

    async def _execute_traced(
        self, run: RunRecord, resumed: bool | None, then: ClaimRequest | None
    ) -> RunRecord | None:
        continued = self.telemetry.continued(run.trace_context if run.depth == 0 else None)
        CURRENT_NAMESPACE.set(run.namespace)  # its spans and its writes' are the namespace's
        with (
            continued,
            self.telemetry.tracer.start_as_current_span(
                f"{genai.INVOKE_AGENT} {run.agent}",
                attributes={
                    genai.OPERATION: genai.INVOKE_AGENT,
                    genai.AGENT_NAME: run.agent,
                    genai.AGENT_ID: f"{run.namespace}/{run.agent}@{run.agent_generation}",
                    genai.CONVERSATION_ID: run.id,
                    genai.RUN_ID: run.id,
                    genai.NAMESPACE: run.namespace,
                },
            ) as span,
        ):
            outcome, following = await self._execute(run, resumed, then)
            span.set_attributes(
                {
                    genai.INPUT_TOKENS: outcome.usage.input_tokens,
                    genai.OUTPUT_TOKENS: outcome.usage.output_tokens,
                    genai.COST: outcome.usage.cost,
                    "hangar.run.status": outcome.status.value,
                    **{f"hangar.time.{k}": v for k, v in (outcome.timing or {}).items()},
                }
            )
            if outcome.status in (RunStatus.FAILED, RunStatus.CANCELLED):
                span.set_status(StatusCode.ERROR, outcome.reason.value)
        return following

    async def _execute(
        self, run: RunRecord, resumed: bool | None = None, then: ClaimRequest | None = None
    ) -> tuple[Outcome, RunRecord | None]:
        spent = _Spent()

        async def store_held(events: Held) -> None:
            (type, data), before = events[-1], events[:-1]
            await self.record(run, EventType(type), data, before=before)

        held = _HeldEvents(store_held)

        def failed(reason: StopReason, message: str, hint: str | None = None) -> Outcome:
            error = RunError(reason.value, message, hint)
            return Outcome(RunStatus.FAILED, reason, spent.usage, {}, error)

        try:
            if resumed is None:  # not claimed from the queue: its start is stored here
                resumed = run.last_seq > 0
                started = RunStarted(self.id, resumed)
                await self.record(run, started.TYPE, started.to_json())
            outcome = await self._drive(run, spent, held, resumed)
        except (asyncio.CancelledError, RunCancelled):
            outcome = _cancelled(spent.usage)
        except TimeoutError:
            outcome = failed(StopReason.TIMEOUT, "the run exceeded its wall-time limit")
        except ModelProviderError as exc:
            outcome = failed(StopReason.MODEL_ERROR, exc.message, exc.hint)
        except (ConfigurationError, ClientError) as exc:
            # A run's own setup is wrong (a missing model, a bad key): fixable by the user.
            outcome = failed(StopReason.CONFIGURATION_ERROR, exc.message, exc.hint)
        except HangarError as exc:
            outcome = failed(StopReason.INTERNAL_ERROR, exc.message, exc.hint)
        except Exception as exc:
            log.exception("run %s failed unexpectedly", run.id)
            outcome = failed(StopReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        outcome.timing = spent.timing(run)
        learns = run.user is not None and run.parent_id is None
        self._ending.add(run.id)
        try:
            following = await self._finish(
                run, outcome, await held.take(), None if learns else then
            )
        except LeaseLostError as exc:
            log.warning("run %s: %s; its new worker goes on with it", run.id, exc.message)
            return outcome, None
        await self._learn(run, outcome)
        return outcome, following

    async def _drive(
        self, run: RunRecord, spent: _Spent, held: _HeldEvents, resumed: bool
    ) -> Outcome:
        spec = await self.agents.get(run.namespace, run.agent, run.agent_generation)
        model, pricing, provider = await self.models.get(run.namespace, spec.model)
        declared = caller_tools(run.input.get("tools", []))
        offered: set[str] = {d.name for d in declared}
        """The tools the run has: metrics name these, and any other call 'unknown'."""
        resume = None
        # Events exist: go on from them (after an approval, or another worker's death).
        events = await self.store.list_events(run.namespace, run.id) if resumed else []
        if resumed:
            await self.budgets.release(run.id)  # a model call out when its worker died
        if events:
            resume = replay(events, {d.name for d in declared})
            if resume is not None:
                spent.usage = resume.usage
            for stored in events:
                found = parse(stored.type, stored.data)
                if isinstance(found, (ToolResult, KnowledgeFound)):
                    spent.note(KnowledgeFound("", "", found.citations))  # citations only

        async def record(event: Event) -> None:
            type, data = event.TYPE, event.to_json()
            if isinstance(event, Final):  # stored with the run's end
                held.hold(type, data, at_most=None)
                return
            if isinstance(event, ModelRequested):  # stored with the response
                held.hold(type, data, at_most=HOLD_SECONDS)
                return
            spent.note(event)
            ledger = None
            if isinstance(event, ModelResponded):
                ledger = self._charged(run, event.model, event.usage, event.duration_ms)
            elif isinstance(event, MemoryLoaded) and event.usage is not None:
                ledger = self._charged(
                    run, event.model or "", event.usage, event.duration_ms or 0.0
                )
            elif isinstance(event, ToolResult):
                self.metrics.tool_call(
                    run.namespace,
                    run.agent,
                    event.name if event.name in offered else UNKNOWN_TOOL,
                    event.outcome,
                    event.duration_ms / 1000,
                )
            if isinstance(event, (ModelResponded, ToolResult, MemoryLoaded)) and (
                event.usage is not None
            ):
                spent.usage = spent.usage + event.usage
            await self.record(run, type, data, ledger=ledger, before=await held.take())

        async def on_delta(text: str) -> None:
            self.bus.publish(BusItem(run.id, 0, EventType.DELTA.value, {"text": text}))

        checked = [time.monotonic()]

        async def check_cancelled() -> bool:
            # A cancel for a run in this process cancels its task at once; this check
            # is for cancels that arrive through another process, so once a second
            # is soon enough and spares the store a read per step.
            if time.monotonic() - checked[0] < CANCEL_CHECK_SECONDS:
                return False
            checked[0] = time.monotonic()
            current = await self.store.get_run(run.namespace, run.id)
            return current is not None and current.cancel_requested

        given = [Message.from_openai(m) for m in run.input.get("messages", [])]
        history, remembered, spent_before = await self._remember(
            run, spec, question(given), events, record
        )
        messages = [*(Message.from_openai(m) for m in history), *given]
        retrieved = remembered
        auto = [ref for ref in spec.knowledge if ref.retrieval == "auto"]
        if auto:  # once per run: a resumed run gets the same passages back
            found = next(
                (e for s in events if isinstance(e := parse(s.type, s.data), KnowledgeFound)),
                None,
            )
            if found is None:
                found = KnowledgeFound.from_json(
                    await retrieve(self.knowledge, run.namespace, auto, question(messages))
                )
                await record(found)
            retrieved = "\n\n".join(p for p in (remembered, found.context) if p)
        run_sandbox = (
            RunSandbox(self.sandboxes, self.store, run.namespace, spec.sandbox)
            if spec.uses_sandbox()
            else None
        )
        tools = await agent_tools(spec, run.namespace, self.hub, self, self.knowledge)
        offered.update(tools)
        inp = LoopInput(
            agent=spec,
            model=model,
            messages=messages,
            tools=tools,
            caller_tools=declared,
            pricing=pricing,
            context=ToolContext(
                namespace=run.namespace,
                run_id=run.id,
                agent=run.agent,
                allow_hosts=tuple(spec.egress.allow_hosts),
                egress=self.admission.grants(run.namespace).policy,
                sandbox=run_sandbox.get if run_sandbox is not None else None,
                depth=run.depth,
                user=run.user,
                key_id=run.key_id,
            ),
            record=record,
            on_delta=on_delta,
            check_cancelled=check_cancelled,
            audit=self.store.record_tool_call,
            tracer=self.telemetry.tracer,
            provider=provider,
            retrieved=retrieved,
            spent_before=spent_before,
            namespace_policies=await namespace_policies(self.store, run.namespace),
            budget=RunBudget(
                self.budgets, run.namespace, run.agent, pricing, spec.max_output_tokens, run.id
            ),
        )
        try:
            async with asyncio.timeout(spec.limits.timeout_seconds):
                outcome = await run_loop(inp, resume)
            if spent.citations and outcome.status is RunStatus.SUCCEEDED:
                outcome.output["citations"] = spent.citations
            return outcome
        finally:
            if run_sandbox is not None:
                await run_sandbox.close()

    async def _remember(
        self,
        run: RunRecord,
        spec: AgentSpec,
        asked: str,
        events: list[RunEvent],
        record: Callable[[Event], Awaitable[None]],
    ) -> tuple[list[dict[str, Any]], str, Usage]:
        """The session history the run sees (summarised past the agent's budget) and
        what it recalls of its end user, recorded once as its ``memory`` event (a
        resumed run reads the recall back; the summary is kept on the session).
        Returns the history, the recall as context, and what summarising cost."""
        loaded = MemoryLoaded()
        recorded = next(
            (e for s in events if isinstance(e := parse(s.type, s.data), MemoryLoaded)), None
        )
        history: list[dict[str, Any]] = []
        if run.session_id is not None:  # the session's earlier turns come first
            turns = await self.store.session_runs(run.namespace, run.session_id)
            budget = spec.memory.session
            if budget is None:
                history = conversation(turns, before=run.id)
            else:
                session = await self.store.get_session(run.namespace, run.session_id)
                name = budget.model or spec.model
                model, pricing, _ = await self.models.get(run.namespace, name)
                started = time.perf_counter()
                fitted = await fit(
                    turns_of(turns, before=run.id),
                    budget.max_tokens,
                    session.summary if session is not None else None,
                    model_summariser(model, budget.max_tokens),
                )
                history = fitted.messages
                if fitted.summary is not None:
                    loaded = replace(loaded, summary=fitted.summary)
                if fitted.fresh and fitted.summary is not None:
                    await self.store.set_session_summary(
                        run.namespace, run.session_id, fitted.summary
                    )
                    loaded = replace(
                        loaded,
                        model=name,
                        usage=priced(fitted.usage, pricing),
                        duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    )
        facts: list[str] = []
        if spec.memory.user is not None and run.user is not None:
            if recorded is not None:
                facts = [m.text for m in recorded.recalled or ()]
            else:
                found = await self.memories.recall(
                    run.namespace, run.user, asked, spec.memory.user.recall
                )
                loaded = replace(loaded, recalled=tuple(Recalled(m.id, m.text) for m in found))
                facts = [m.text for m in found]
        spent = Usage()
        if loaded.to_json() and recorded is None:
            await record(loaded)
            spent = loaded.usage or spent
        return history, recalled_context(facts), spent

    async def _learn(self, run: RunRecord, outcome: Outcome) -> None:
        """After a run for an end user: keep what it taught about them. Its tokens go
        to the ledger under the run (the run's own usage is final by now)."""
        if run.user is None or run.parent_id is not None:
            return  # an agent called as a tool hears its caller, not the user
        if outcome.status is not RunStatus.SUCCEEDED:
            return
        spec = await self.agents.get(run.namespace, run.agent, run.agent_generation)
        if spec.memory.user is None or "message" not in outcome.output:
            return
        name = spec.memory.user.model or spec.model
        try:
            model, pricing, _ = await self.models.get(run.namespace, name)
            said = [*run.input.get("messages", []), outcome.output["message"]]
            started = time.perf_counter()
            learnt = await self.memories.learn(run.namespace, run.user, model, said, run.id)
            duration_ms = round((time.perf_counter() - started) * 1000, 3)
            charged = self._charged(run, name, priced(learnt.usage, pricing), duration_ms)
            await self.store.record_usage(charged)
            log.info(
                "run %s: %d facts added, %d updated for its user",
                run.id,
                learnt.added,
                learnt.updated,
            )
        except Exception:  # the run is done; losing one lesson must not disturb it
            log.exception("learning from run %s for its user failed", run.id)

    def _charged(self, run: RunRecord, model: str, usage: Usage, duration_ms: float) -> LedgerEntry:
        """A model call's tokens and cost: into the metrics now, and the ledger line
        (stored with the call's event, or on its own for a call outside the run's)."""
        self.metrics.model_call(run.namespace, run.agent, model, usage, duration_ms / 1000)
        return LedgerEntry(run.namespace, run.agent, run.id, model, usage, now())

    async def run_child(self, context: ToolContext, agent: str, text: str) -> RunRecord:
        """Run ``agent`` on ``text`` as a child of the calling run, inline in this task."""
        stored = await self.store.get_resource(context.namespace, Agent.KIND, agent)
        if stored is None:
            raise ToolError(f"agent {agent!r} not found in namespace {context.namespace!r}")
        stamp = now()
        child = RunRecord(
            id=new_id("run"),
            namespace=context.namespace,
            agent=agent,
            agent_generation=stored.generation,
            status=RunStatus.RUNNING,
            input={"messages": [{"role": "user", "content": text}], "tools": []},
            created_at=stamp,
            started_at=stamp,
            worker=f"{self.id}/child",
            lease_expires_at=stamp + timedelta(seconds=self.settings.lease_seconds),
            parent_id=context.run_id,
            user=context.user,
            key_id=context.key_id,
            depth=context.depth + 1,
            trace_context=Telemetry.current_traceparent(),
        )
        await self.store.create_run(child)
        self.holders[child.id] = child.worker or ""
        try:
            await self.execute(child)
        finally:
            self.holders.pop(child.id, None)
        finished = await self.store.get_run(context.namespace, child.id)
        assert finished is not None
        return finished

    def _publish_last(
        self, run: RunRecord, last_seq: int, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Publish ``events``, stored as the run's last, up to ``last_seq``."""
        for seq, (type, data) in enumerate(events, start=last_seq - len(events) + 1):
            self.bus.publish(BusItem(run.id, seq, type, data))

    async def _finish(
        self,
        run: RunRecord,
        outcome: Outcome,
        held: Sequence[tuple[str, dict[str, Any]]] = (),
        then: ClaimRequest | None = None,
    ) -> RunRecord | None:
        """End the run and store its last events in one statement (or transaction):
        those held back (``held``), its error, and ``run_finished``; then announce them.
        With ``then``, claim the slot's next run with it and return that (a parked
        run claims nothing)."""
        last = list(held)
        if outcome.status is RunStatus.WAITING_APPROVAL:
            calls = tuple(HeldCall.from_json(c) for c in outcome.output["pending"])
            requested = ApprovalRequested(calls, outcome.usage)
            last.append((requested.TYPE.value, requested.to_json()))
            self.queue.ended(run.id)
            parked = await self.store.park_run(
                run.id, outcome.usage, holder=run.worker, events=last
            )
            self._publish_last(run, parked.last_seq, last)
            return None
        error = None if outcome.error is None else outcome.error.to_json()
        if error is not None:
            last.append((RunError.TYPE.value, error))
        ended = RunFinished(
            outcome.status.value, outcome.reason.value, outcome.usage, outcome.timing
        )
        last.append((ended.TYPE.value, ended.to_json()))
        ending: dict[str, Any] = {
            "reason": outcome.reason.value,
            "output": outcome.output,
            "error": error,
            "usage": outcome.usage,
            "timing": outcome.timing,
            "events": last,
        }
        following = None
        if then is not None and run.worker:
            finished, following = await self.queue.finish_and_claim(
                run.id, outcome.status, then, holder=run.worker, **ending
            )
        else:
            self.queue.ended(run.id)
            finished = await self.store.finish_run(
                run.id, outcome.status, holder=run.worker, **ending
            )
        self._publish_last(run, finished.last_seq, last)
        self.metrics.run_finished(
            run.namespace, run.agent, finished.status.value, finished.reason or "", outcome.timing
        )
        return following

"""Executing one run: from its claim (or a parent's tool call) to its stored end.

Prepares the run (its agent at the run's generation, model, tools, context), drives
the loop with a recorder that stores each event before the loop goes on, turns what
went wrong into the run's outcome, and stores the end with its last events (claiming
the next run for the same task in the same statement when it can).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
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
from hangar.memory.knowledge import Knowledge
from hangar.models.limits import ModelWait, expecting, reporting_waits
from hangar.models.messages import ToolDefinition
from hangar.runtime.accounting import Accounts, Spent
from hangar.runtime.bus import BusItem, EventBus
from hangar.runtime.context import RunContexts
from hangar.runtime.events import (
    ApprovalRequested,
    Delta,
    Event,
    EventType,
    Final,
    HeldCall,
    ModelRequested,
    ModelWaiting,
    RunError,
    RunFinished,
    RunStarted,
    StopReason,
    parse,
)
from hangar.runtime.held import HOLD_SECONDS, Held, HeldEvents
from hangar.runtime.loop import LoopInput, Outcome, run_loop
from hangar.runtime.queue import FairShare
from hangar.runtime.replay import replay
from hangar.runtime.resolve import AgentSpecs, ModelCache, agent_tools, namespace_policies
from hangar.runtime.sandboxes import RunSandbox
from hangar.sandbox.manager import SandboxManager
from hangar.spec.agent import Agent
from hangar.store.base import Store
from hangar.store.records import ClaimRequest, LedgerEntry, RunRecord, RunStatus
from hangar.telemetry import Telemetry, genai
from hangar.telemetry.budgets import Budgets, RunBudget
from hangar.telemetry.tracing import CURRENT_NAMESPACE
from hangar.tools.base import ToolContext
from hangar.tools.mcp import MCPHub
from hangar.usage import Usage

log = logging.getLogger("hangar.runtime")

CANCEL_CHECK_SECONDS = 1.0


def caller_tools(raw: list[dict[str, Any]]) -> tuple[ToolDefinition, ...]:
    """The caller's own tools (OpenAI-style), handed back to it when the model calls them."""
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


class RunExecutor:
    """Drives runs in this process; ``Runtime`` builds it with the process's parts."""

    def __init__(
        self,
        worker_id: str,
        store: Store,
        bus: EventBus,
        settings: Settings,
        *,
        queue: FairShare,
        agents: AgentSpecs,
        models: ModelCache,
        contexts: RunContexts,
        accounts: Accounts,
        sandboxes: SandboxManager,
        hub: MCPHub,
        knowledge: Knowledge,
        telemetry: Telemetry,
        budgets: Budgets,
        admission: Admission,
    ) -> None:
        self.worker_id = worker_id
        self.store = store
        self.bus = bus
        self.settings = settings
        self.queue = queue
        self.agents = agents
        self.models = models
        self.contexts = contexts
        self.accounts = accounts
        self.sandboxes = sandboxes
        self.hub = hub
        self.knowledge = knowledge
        self.telemetry = telemetry
        self.budgets = budgets
        self.admission = admission
        self.holders: dict[str, str] = {}
        """Run id to the worker name that holds its lease here (renewed by the heartbeat)."""
        self.ending: set[str] = set()
        """Runs whose end is being stored: too late to cancel (``Worker.cancel_local``)."""

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
        self.publish_last(run, event.seq, [*before, (event.type, event.data)])

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
        claims the next run for the same task, returned (when nothing follows the end: a run that
        learns about its user does that first). Its span continues the trace the run
        was started in (a child run's, the calling tool's span, which is current
        already). A run claimed holds its place in its Model's room until its first
        call (``ModelCache.expect``)."""
        try:
            with expecting(self.models.expected(run.id)):
                return await self._execute_traced(run, resumed, then)
        finally:
            self.ending.discard(run.id)

    async def stop_orphan(self, run: RunRecord, then: ClaimRequest) -> RunRecord | None:
        """A child run is never queued: it runs inline in its parent's task. Claimed,
        its lease ran out with its parent's worker; finishing it would spend for no one
        (its parent takes the call as interrupted, and may make it again)."""
        log.warning("run %s: its parent %s lost its worker; stopping it", run.id, run.parent_id)
        spent = replay(await self.store.list_events(run.namespace, run.id), set())
        outcome = parent_lost(run, run.usage if spent is None else spent.usage)
        await self.budgets.release(run.id)
        try:
            return await self.finish(run, outcome, then=then)
        except LeaseLostError:
            return None

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
        spent = Spent()

        async def store_held(events: Held) -> None:
            (type, data), before = events[-1], events[:-1]
            await self.record(run, EventType(type), data, before=before)

        held = HeldEvents(store_held)

        def failed(reason: StopReason, message: str, hint: str | None = None) -> Outcome:
            error = RunError(reason.value, message, hint)
            return Outcome(RunStatus.FAILED, reason, spent.usage, {}, error)

        try:
            if resumed is None:  # not claimed from the queue: its start is stored here
                resumed = run.last_seq > 0
                started = RunStarted(self.worker_id, resumed)
                await self.record(run, started.TYPE, started.to_json())
            outcome = await self._drive(run, spent, held, resumed)
        except (asyncio.CancelledError, RunCancelled):
            outcome = cancelled(spent.usage)
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
        self.ending.add(run.id)
        try:
            following = await self.finish(run, outcome, await held.take(), None if learns else then)
        except LeaseLostError as exc:
            log.warning("run %s: %s; its new worker goes on with it", run.id, exc.message)
            return outcome, None
        await self.contexts.learn(run, outcome)
        return outcome, following

    async def _drive(
        self, run: RunRecord, spent: Spent, held: HeldEvents, resumed: bool
    ) -> Outcome:
        spec = await self.agents.get(run.namespace, run.agent, run.agent_generation)
        model, pricing, provider = await self.models.get(run.namespace, spec.model, run.agent)
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
                spent.cite(parse(stored.type, stored.data))

        async def record(event: Event) -> None:
            type, data = event.TYPE, event.to_json()
            if isinstance(event, Final):  # stored with the run's end
                held.hold(type, data, at_most=None)
                return
            if isinstance(event, ModelRequested):  # stored with the response
                held.hold(type, data, at_most=HOLD_SECONDS)
                return
            ledger = self.accounts.note(run, event, spent, offered)
            await self.record(run, type, data, ledger=ledger, before=await held.take())

        async def on_delta(text: str) -> None:
            delta = Delta(text)
            self.bus.publish(BusItem(run.id, 0, delta.TYPE.value, delta.to_json()))

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

        async def waiting(wait: ModelWait) -> None:
            await record(ModelWaiting(wait.model, wait.reason, wait.seconds))

        with reporting_waits(waiting):  # the run's model calls past a Model's limits
            context = await self.contexts.assemble(run, spec, events, record)
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
                messages=context.messages,
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
                retrieved=context.retrieved,
                spent_before=context.spent,
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
            worker=f"{self.worker_id}/child",
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

    def publish_last(
        self, run: RunRecord, last_seq: int, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> None:
        """Publish ``events``, stored as the run's last, up to ``last_seq``."""
        for seq, (type, data) in enumerate(events, start=last_seq - len(events) + 1):
            self.bus.publish(BusItem(run.id, seq, type, data))

    async def finish(
        self,
        run: RunRecord,
        outcome: Outcome,
        held: Sequence[tuple[str, dict[str, Any]]] = (),
        then: ClaimRequest | None = None,
    ) -> RunRecord | None:
        """End the run and store its last events in one statement (or transaction):
        those held back (``held``), its error, and ``run_finished``; then announce them.
        With ``then``, claim the next run for the same task with it and return that (a parked
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
            self.publish_last(run, parked.last_seq, last)
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
        self.publish_last(run, finished.last_seq, last)
        self.accounts.metrics.run_finished(
            run.namespace, run.agent, finished.status.value, finished.reason or "", outcome.timing
        )
        return following


def parent_lost(run: RunRecord, usage: Usage) -> Outcome:
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


def cancelled(usage: Usage) -> Outcome:
    return Outcome(
        RunStatus.CANCELLED,
        StopReason.CANCELLED,
        usage,
        {},
        RunError(StopReason.CANCELLED.value, "the run was cancelled"),
    )

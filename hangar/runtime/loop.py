"""The agent loop: context → model → tools → results → repeat, until an answer or a limit.

The loop knows nothing of stores, queues or HTTP. It reports every step to a
``Recorder`` before taking the next, and streams text to an ``on_delta``
callback. That keeps it fast to run in process (the benchmark does) and lets
the worker decide where events go.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from opentelemetry.trace import NoOpTracer, StatusCode, Tracer

from hangar.errors import BudgetExceededError, HangarError, RunCancelled
from hangar.memory.retrieval import with_context
from hangar.models.base import ChatModel, complete
from hangar.models.messages import Message, ModelRequest, ModelSettings, ToolCall, ToolDefinition
from hangar.models.pricing import priced
from hangar.runtime.events import (
    Event,
    Final,
    HeldCall,
    ModelRequested,
    ModelResponded,
    RunError,
    StopReason,
    ToolCalled,
    ToolResult,
)
from hangar.runtime.replay import Resume
from hangar.spec.agent import AgentSpec
from hangar.spec.model import Pricing
from hangar.store.records import RunStatus, ToolAudit
from hangar.telemetry import genai
from hangar.telemetry.budgets import RunBudget
from hangar.tools.base import Tool, ToolContext, ToolReport
from hangar.tools.function import FunctionTool
from hangar.tools.policy import AGENT_POLICY, Decision, NamedPolicy, decide_all, refusal
from hangar.usage import Usage


class Recorder(Protocol):
    async def __call__(self, event: Event) -> None: ...


async def _no_record(event: Event) -> None:
    return None


@dataclass
class LoopInput:
    """Everything one run needs, resolved by the caller."""

    agent: AgentSpec
    model: ChatModel
    messages: list[Message]
    tools: dict[str, Tool] = field(default_factory=dict)
    caller_tools: tuple[ToolDefinition, ...] = ()
    """Tools the API caller declared: calls to these are handed back, not run."""
    pricing: Pricing = field(default_factory=Pricing)
    context: ToolContext = field(default_factory=lambda: ToolContext("default", "", ""))
    record: Recorder = _no_record
    on_delta: Callable[[str], Awaitable[None]] | None = None
    check_cancelled: Callable[[], Awaitable[bool]] | None = None
    audit: Callable[[ToolAudit], Awaitable[None]] | None = None
    """Where each tool call's audit entry goes (the store, in a worker)."""
    budget: RunBudget | None = None
    """Reserves each model call on the Budgets that apply, and settles it after."""
    tracer: Tracer = field(default_factory=NoOpTracer)
    provider: str = ""
    """The model's provider, for the GenAI ``gen_ai.provider.name`` of model spans."""
    retrieved: str = ""
    """Knowledge passages and memories found for the run, put after the instructions."""
    spent_before: Usage = field(default_factory=Usage)
    """Spent for the run before its first step (summarising its session's history)."""
    namespace_policies: tuple[NamedPolicy, ...] = ()
    """The namespace's ToolPolicies: with the agent's own, the strictest decides."""

    def decide(self, tool: str) -> Decision:
        own = NamedPolicy(AGENT_POLICY, self.agent.tool_policy)
        return decide_all((own, *self.namespace_policies), tool)


@dataclass
class Outcome:
    status: RunStatus
    reason: StopReason
    usage: Usage
    output: dict[str, Any]
    error: RunError | None = None
    timing: dict[str, float] | None = None
    """Milliseconds in the model, in tools and in Hangar itself; set by the worker."""


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def arguments_digest(arguments: str) -> str:
    """The audit log's fingerprint of a call's arguments: equal JSON, equal hash."""
    try:
        canonical = json.dumps(json.loads(arguments or "{}"), sort_keys=True, separators=(",", ":"))
    except ValueError:
        canonical = arguments
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _call_tool(
    tool: Tool | None, call: ToolCall, ctx: ToolContext, inp: LoopInput, approved: bool
) -> tuple[str, str]:
    """Run one tool call; any failure becomes an error text the model can read.
    Returns the text and the outcome the audit log records."""
    if tool is None:
        return f"error: no tool named {call.name!r} is available to this agent", "error"
    decision = inp.decide(call.name)
    if decision.action == "deny":
        return f"error: {refusal(ctx.agent, call.name, decision)}", "denied"
    if decision.action == "require_approval" and not approved:
        raise AssertionError(f"{call.name} needs approval; the loop holds such calls")
    try:
        arguments = call.parsed_arguments()
    except ValueError as exc:
        return f"error: {exc}", "error"
    try:
        return await tool.call(arguments, ctx), "ok"
    except HangarError as exc:
        return f"error: {exc.message}", "error"
    except Exception as exc:  # a tool's bug is the model's problem to route around
        return f"error: {type(exc).__name__}: {exc}", "error"


class _Step:
    """Runs one step's tool calls: records each result, audits each call."""

    def __init__(self, inp: LoopInput) -> None:
        self.inp = inp
        self.spent = Usage()
        """Tokens and cost that tools spent for the run (agents called as tools)."""

    def take_spent(self) -> Usage:
        spent, self.spent = self.spent, Usage()
        return spent

    async def _audit(self, call: ToolCall, outcome: str, started: float) -> None:
        if self.inp.audit is not None:
            await self.inp.audit(
                ToolAudit(
                    namespace=self.inp.context.namespace,
                    agent=self.inp.context.agent,
                    run_id=self.inp.context.run_id,
                    tool=call.name,
                    arguments_sha256=arguments_digest(call.arguments),
                    outcome=outcome,
                    duration_ms=_ms(started),
                    created_at=datetime.now(UTC),
                )
            )

    async def _result(
        self,
        step: int,
        call: ToolCall,
        content: str,
        outcome: str,
        started: float,
        report: ToolReport | None = None,
    ) -> Message:
        await self._audit(call, outcome, started)
        child = report is not None and report.child_run is not None
        if report is not None and child:
            self.spent = self.spent + report.usage
        await self.inp.record(
            ToolResult(
                step,
                call.id,
                call.name,
                content,
                is_error=outcome != "ok",
                outcome=outcome,
                duration_ms=_ms(started),
                citations=tuple(report.citations) if report is not None else (),
                child_run=report.child_run if report is not None else None,
                usage=report.usage if report is not None and child else None,
            )
        )
        return Message(role="tool", content=content, tool_call_id=call.id, name=call.name)

    async def run(self, step: int, call: ToolCall, approved: bool = False) -> Message:
        started = time.perf_counter()
        inp = self.inp
        report = ToolReport()
        context = replace(inp.context, report=report)
        tool = inp.tools.get(call.name)
        with inp.tracer.start_as_current_span(
            f"{genai.EXECUTE_TOOL} {call.name}",
            attributes={
                genai.OPERATION: genai.EXECUTE_TOOL,
                genai.TOOL_NAME: call.name,
                genai.TOOL_CALL_ID: call.id,
                genai.TOOL_TYPE: _tool_type(tool),
                genai.STEP: step,
            },
        ) as span:
            content, outcome = await _call_tool(tool, call, context, inp, approved)
            span.set_attribute(genai.TOOL_OUTCOME, outcome)
            if outcome != "ok":
                span.set_status(StatusCode.ERROR, content[:200])
            return await self._result(step, call, content, outcome, started, report)

    async def refuse(self, step: int, call: ToolCall, content: str, outcome: str) -> Message:
        return await self._result(step, call, content, outcome, time.perf_counter())

    async def run_all(
        self, step: int, calls: list[ToolCall], approved: bool = False
    ) -> list[Message]:
        if len(calls) == 1:
            return [await self.run(step, calls[0], approved)]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.run(step, call, approved)) for call in calls]
        return [task.result() for task in tasks]


def _tool_type(tool: Tool | None) -> str:
    """GenAI ``gen_ai.tool.type``: ``extension`` for MCP tools and agents, which run
    outside this process's code; ``function`` for built-ins."""
    return "function" if tool is None or isinstance(tool, FunctionTool) else "extension"


def _chat_attributes(inp: LoopInput, step: int) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        genai.OPERATION: genai.CHAT,
        genai.REQUEST_MODEL: inp.model.name,
        genai.PROVIDER: inp.provider or "unknown",
        genai.STEP: step,
    }
    if inp.agent.temperature is not None:
        attributes[genai.REQUEST_TEMPERATURE] = inp.agent.temperature
    if inp.agent.max_output_tokens is not None:
        attributes[genai.REQUEST_MAX_TOKENS] = inp.agent.max_output_tokens
    return attributes


def _held(call: ToolCall, rule: str) -> dict[str, Any]:
    return HeldCall(call.id, call.name, call.arguments, rule).to_json()


async def run_loop(inp: LoopInput, resume: Resume | None = None) -> Outcome:
    """Drive the run to an outcome: from its input, or from ``resume`` (the state its
    stored events describe) without repeating what they record."""
    spec = inp.agent
    limits = spec.limits
    messages = list(inp.messages)
    if spec.instructions and not (messages and messages[0].role == "system"):
        messages.insert(0, Message(role="system", content=spec.instructions))
    messages = with_context(messages, inp.retrieved)
    # Tools the policy denies are not offered; a call to one anyway is refused by name.
    offered = [t for name, t in inp.tools.items() if inp.decide(name).action != "deny"]
    definitions = tuple(t.definition for t in offered) + inp.caller_tools
    caller_names = {d.name for d in inp.caller_tools}
    settings = ModelSettings(temperature=spec.temperature, max_output_tokens=spec.max_output_tokens)
    usage = inp.spent_before
    last_text = ""
    steps = _Step(inp)
    first_step = 1

    def fail(reason: StopReason, message: str) -> Outcome:
        return Outcome(
            RunStatus.FAILED,
            reason,
            usage,
            {"text": last_text, "finish_reason": reason.value},
            RunError(reason.value, message),
        )

    def handed_back(message: Message) -> Outcome | None:
        calls = [c for c in message.tool_calls if c.name in caller_names]
        if not calls:
            return None
        out = Message(role="assistant", content=message.content, tool_calls=tuple(calls))
        return Outcome(
            RunStatus.SUCCEEDED,
            StopReason.TOOL_CALLS,
            usage,
            {
                "text": message.content or "",
                "message": out.to_openai(),
                "finish_reason": "tool_calls",
            },
        )

    async def completed(answer: Message, record: bool = True) -> Outcome:
        if record:
            await inp.record(Final(answer.content or ""))
        return Outcome(
            RunStatus.SUCCEEDED,
            StopReason.COMPLETED,
            usage,
            {"text": answer.content or "", "message": answer.to_openai(), "finish_reason": "stop"},
        )

    async def hand_back(outcome: Outcome) -> Outcome:
        message = outcome.output["message"]
        await inp.record(Final(outcome.output["text"], tuple(message["tool_calls"])))
        return outcome

    if resume is not None:
        messages.extend(resume.appended)
        usage, last_text, first_step = resume.usage, resume.last_text, resume.step + 1
        answer = resume.answered
        if answer is not None:
            # The model had answered when the worker died: end the run with that answer.
            return await completed(answer, record=not resume.final_recorded)
        approved: list[ToolCall] = []
        for call in resume.unfinished:
            decided = resume.decision(call.id)
            if decided is not None and not decided.approved:
                reason = f": {decided.comment}" if decided.comment else ""
                messages.append(
                    await steps.refuse(
                        resume.step,
                        call,
                        f"error: {decided.by or 'the approver'} denied this call{reason}",
                        "approval_denied",
                    )
                )
            elif decided is not None:
                approved.append(call)
            elif inp.tools.get(call.name) is not None and inp.tools[call.name].idempotent:
                approved.append(call)  # interrupted, and harmless to repeat
            else:
                messages.append(
                    await steps.refuse(
                        resume.step,
                        call,
                        "error: this call was interrupted before it finished and was not "
                        "repeated (the tool is not idempotent); check its effect before retrying",
                        "interrupted",
                    )
                )
        if approved:
            messages.extend(await steps.run_all(resume.step, approved, approved=True))
        usage = usage + steps.take_spent()
        last = next((m for m in reversed(resume.appended) if m.role == "assistant"), None)
        if last is not None and (back := handed_back(last)) is not None:
            return await hand_back(back)

    for step in range(first_step, limits.max_steps + 1):
        if inp.check_cancelled is not None and await inp.check_cancelled():
            raise RunCancelled
        request = ModelRequest(tuple(messages), definitions, settings)
        await inp.record(
            ModelRequested(step, inp.model.name, len(messages), tuple(d.name for d in definitions))
        )
        if limits.max_cost is not None and usage.cost >= limits.max_cost:
            return fail(
                StopReason.BUDGET_EXCEEDED,
                f"the run spent ${usage.cost:.6f}, its limit is ${limits.max_cost:g}",
            )
        hold = None
        if inp.budget is not None:
            try:
                hold = await inp.budget.reserve(request)
            except BudgetExceededError as exc:
                return fail(StopReason.BUDGET_EXCEEDED, exc.message)
        started = time.perf_counter()
        with inp.tracer.start_as_current_span(
            f"{genai.CHAT} {inp.model.name}", attributes=_chat_attributes(inp, step)
        ) as span:
            try:
                response = await complete(inp.model, request, inp.on_delta)
            except BaseException:
                if inp.budget is not None:
                    await inp.budget.settle(hold, Usage())  # nothing was spent: release
                raise
            call_usage = priced(response.usage, inp.pricing)
            if inp.budget is not None:
                await inp.budget.settle(hold, call_usage)
            span.set_attributes(
                {
                    genai.INPUT_TOKENS: call_usage.input_tokens,
                    genai.OUTPUT_TOKENS: call_usage.output_tokens,
                    genai.RESPONSE_FINISH_REASONS: [response.finish_reason],
                    genai.COST: call_usage.cost,
                }
            )
        usage = usage + call_usage
        message = response.message
        messages.append(message)
        last_text = message.content or last_text
        await inp.record(
            ModelResponded(
                step,
                inp.model.name,
                message.to_openai(),
                response.finish_reason,
                call_usage,
                _ms(started),
            )
        )
        if limits.max_cost is not None and usage.cost > limits.max_cost:
            return fail(
                StopReason.BUDGET_EXCEEDED,
                f"the run spent ${usage.cost:.6f}, over its limit of ${limits.max_cost:g}",
            )
        if limits.max_tokens is not None and usage.total_tokens > limits.max_tokens:
            return fail(
                StopReason.MAX_TOKENS,
                f"the run used {usage.total_tokens} tokens, over its limit of {limits.max_tokens}",
            )
        if not message.tool_calls:
            return await completed(message)

        ours = [c for c in message.tool_calls if c.name not in caller_names]
        for call in ours:
            await inp.record(ToolCalled(step, call.id, call.name, call.arguments))
        held = []
        for call in ours:
            decision = inp.decide(call.name)
            if call.name in inp.tools and decision.action == "require_approval":
                held.append(_held(call, decision.rule))
        held_ids = {h["id"] for h in held}
        now = [c for c in ours if c.id not in held_ids]
        if now:
            messages.extend(await steps.run_all(step, now))
            usage = usage + steps.take_spent()
        if held:
            return Outcome(
                RunStatus.WAITING_APPROVAL,
                StopReason.WAITING_APPROVAL,
                usage,
                {"text": last_text, "pending": held},
            )
        if (back := handed_back(message)) is not None:
            return await hand_back(back)

    return fail(
        StopReason.MAX_STEPS,
        f"the agent did not finish within its limit of {limits.max_steps} steps",
    )

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from hangar.errors import HangarError
from hangar.models.base import ChatModel, complete
from hangar.models.messages import Message, ModelRequest, ModelSettings, ToolCall, ToolDefinition
from hangar.models.pricing import priced
from hangar.runtime.events import EventType, StopReason
from hangar.spec.agent import AgentSpec
from hangar.spec.model import Pricing
from hangar.store.base import RunStatus, ToolAudit, Usage
from hangar.tools.base import Tool, ToolContext
from hangar.tools.policy import decide, refusal


class Recorder(Protocol):
    async def __call__(self, type: EventType, data: dict[str, Any]) -> None: ...


async def _no_record(type: EventType, data: dict[str, Any]) -> None:
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


@dataclass
class Outcome:
    status: RunStatus
    reason: StopReason
    usage: Usage
    output: dict[str, Any]
    error: dict[str, Any] | None = None


class RunCancelled(Exception):
    """Raised inside the loop when a cancel request is seen between steps."""


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
    tool: Tool | None, call: ToolCall, ctx: ToolContext, spec: AgentSpec
) -> tuple[str, str]:
    """Run one tool call; any failure becomes an error text the model can read.
    Returns the text and the outcome the audit log records."""
    if tool is None:
        return f"error: no tool named {call.name!r} is available to this agent", "error"
    decision = decide(spec.tool_policy, call.name)
    if decision.action == "deny":
        return f"error: {refusal(ctx.agent, call.name, decision)}", "denied"
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


async def run_loop(inp: LoopInput) -> Outcome:
    spec = inp.agent
    limits = spec.limits
    messages = list(inp.messages)
    if spec.instructions and not (messages and messages[0].role == "system"):
        messages.insert(0, Message(role="system", content=spec.instructions))
    # Tools the policy denies are not offered; a call to one anyway is refused by name.
    offered = [t for name, t in inp.tools.items() if decide(spec.tool_policy, name).allowed]
    definitions = tuple(t.definition for t in offered) + inp.caller_tools
    caller_names = {d.name for d in inp.caller_tools}
    settings = ModelSettings(temperature=spec.temperature, max_output_tokens=spec.max_output_tokens)
    usage = Usage()
    last_text = ""

    def fail(reason: StopReason, message: str) -> Outcome:
        return Outcome(
            RunStatus.FAILED,
            reason,
            usage,
            {"text": last_text, "finish_reason": reason.value},
            {"code": reason.value, "message": message},
        )

    for step in range(1, limits.max_steps + 1):
        if inp.check_cancelled is not None and await inp.check_cancelled():
            raise RunCancelled
        request = ModelRequest(tuple(messages), definitions, settings)
        await inp.record(
            EventType.MODEL_REQUEST,
            {
                "step": step,
                "model": inp.model.name,
                "messages": len(messages),
                "tools": [d.name for d in definitions],
            },
        )
        started = time.perf_counter()
        response = await complete(inp.model, request, inp.on_delta)
        call_usage = priced(response.usage, inp.pricing)
        usage = usage + call_usage
        message = response.message
        messages.append(message)
        last_text = message.content or last_text
        await inp.record(
            EventType.MODEL_RESPONSE,
            {
                "step": step,
                "model": inp.model.name,
                "message": message.to_openai(),
                "finish_reason": response.finish_reason,
                "usage": call_usage.to_dict(),
                "duration_ms": _ms(started),
            },
        )
        if limits.max_tokens is not None and usage.total_tokens > limits.max_tokens:
            return fail(
                StopReason.MAX_TOKENS,
                f"the run used {usage.total_tokens} tokens, over its limit of {limits.max_tokens}",
            )
        if not message.tool_calls:
            await inp.record(EventType.FINAL, {"text": message.content or ""})
            return Outcome(
                RunStatus.SUCCEEDED,
                StopReason.COMPLETED,
                usage,
                {
                    "text": message.content or "",
                    "message": message.to_openai(),
                    "finish_reason": "stop",
                },
            )

        handed_back = [c for c in message.tool_calls if c.name in caller_names]
        ours = [c for c in message.tool_calls if c.name not in caller_names]
        for call in ours:
            await inp.record(
                EventType.TOOL_CALL,
                {"step": step, "id": call.id, "name": call.name, "arguments": call.arguments},
            )

        async def run_one(call: ToolCall, step: int = step) -> Message:
            started = time.perf_counter()
            content, outcome = await _call_tool(inp.tools.get(call.name), call, inp.context, spec)
            is_error = outcome != "ok"
            if inp.audit is not None:
                await inp.audit(
                    ToolAudit(
                        namespace=inp.context.namespace,
                        agent=inp.context.agent,
                        run_id=inp.context.run_id,
                        tool=call.name,
                        arguments_sha256=arguments_digest(call.arguments),
                        outcome=outcome,
                        duration_ms=_ms(started),
                        created_at=datetime.now(UTC),
                    )
                )
            await inp.record(
                EventType.TOOL_RESULT,
                {
                    "step": step,
                    "id": call.id,
                    "name": call.name,
                    "content": content,
                    "is_error": is_error,
                    "duration_ms": _ms(started),
                },
            )
            return Message(role="tool", content=content, tool_call_id=call.id, name=call.name)

        if len(ours) == 1:
            messages.append(await run_one(ours[0]))
        elif ours:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(run_one(call)) for call in ours]
            messages.extend(task.result() for task in tasks)

        if handed_back:
            out = Message(role="assistant", content=message.content, tool_calls=tuple(handed_back))
            await inp.record(
                EventType.FINAL,
                {"text": message.content or "", "tool_calls": [c.to_openai() for c in handed_back]},
            )
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

    return fail(
        StopReason.MAX_STEPS,
        f"the agent did not finish within its limit of {limits.max_steps} steps",
    )

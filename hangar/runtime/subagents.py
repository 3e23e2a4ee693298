"""Agents as tools: an agent calls another agent like any tool, and a child run does
the work. The child runs inline, in the caller's task: a parent waiting for its
child never holds the worker slot the child would need (no deadlock however many
parents wait), and cancelling or timing out the parent ends the child with it."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from hangar.errors import ToolError
from hangar.models.messages import ToolDefinition
from hangar.store.records import RunRecord, RunStatus
from hangar.tools.base import ToolContext

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "What to ask the agent."}},
    "required": ["input"],
}


def agent_tool_description(name: str, description: str) -> str:
    about = f": {description}" if description else ""
    return f"Ask the agent {name!r}{about}. Returns its answer."


def agent_input(name: str, arguments: dict[str, Any]) -> str:
    """The ``input`` an agent called as a tool was given, or a clear error."""
    text = arguments.get("input")
    if not isinstance(text, str) or not text.strip():
        raise ToolError(f"agent tool {name!r} needs 'input', a non-empty string")
    return text


class ChildRunner(Protocol):
    async def run_child(self, context: ToolContext, agent: str, text: str) -> RunRecord: ...


class AgentTool:
    def __init__(self, runner: ChildRunner, name: str, description: str, max_depth: int) -> None:
        self.runner = runner
        self.name = name
        self.max_depth = max_depth
        self._definition = ToolDefinition(
            name=name,
            description=agent_tool_description(name, description),
            parameters=INPUT_SCHEMA,
        )

    @property
    def definition(self) -> ToolDefinition:
        return self._definition

    @property
    def idempotent(self) -> bool:
        return False  # a child run costs tokens and may act: never repeated blindly

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        text = agent_input(self.name, arguments)
        if context.depth + 1 > self.max_depth:
            raise ToolError(
                f"agent {self.name!r} was not called: agents may nest {self.max_depth} deep "
                f"below agent {context.agent!r}, and this run is already {context.depth} deep",
                hint="raise spec.limits.maxDepth of the calling agent if the nesting is meant",
            )
        child = await self.runner.run_child(context, self.name, text)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError  # the parent was cancelled while its child ran
        if context.report is not None:
            context.report.usage = child.usage
            context.report.child_run = child.id
        if child.status != RunStatus.SUCCEEDED:
            error = (child.error or {}).get("message") or child.reason or child.status.value
            raise ToolError(f"agent {self.name!r} (run {child.id}) {child.status.value}: {error}")
        return str((child.output or {}).get("text", ""))

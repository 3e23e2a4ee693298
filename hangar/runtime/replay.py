"""Rebuild a run's conversation from its stored events, so another worker (or the
same one, after an approval) goes on from the last recorded step without repeating
a model call or a finished tool call."""

from __future__ import annotations

from dataclasses import dataclass, field

from hangar.models.messages import Message, ToolCall
from hangar.runtime.events import (
    ApprovalDecided,
    Final,
    MemoryLoaded,
    ModelResponded,
    ToolResult,
    parse,
)
from hangar.store.records import RunEvent
from hangar.usage import Usage


@dataclass(frozen=True)
class Decision:
    approved: bool
    by: str
    comment: str = ""


@dataclass
class Resume:
    """Where a run stands: what the model has said and been told, what it has cost,
    and the tool calls of its last step that have no result yet."""

    step: int
    appended: list[Message]
    """Messages after the run's input: model replies and tool results, in order."""
    usage: Usage
    unfinished: list[ToolCall]
    decisions: dict[str, Decision] = field(default_factory=dict)
    last_text: str = ""
    final_recorded: bool = False
    """The run's final event is stored already (its worker died just after)."""

    @property
    def answered(self) -> Message | None:
        """The model's last reply when it was an answer (no tool calls): the run is
        done but for its ending, and must not ask the model again."""
        last = next((m for m in reversed(self.appended) if m.role == "assistant"), None)
        return last if last is not None and not last.tool_calls else None

    def decision(self, call_id: str) -> Decision | None:
        return self.decisions.get(call_id)


def replay(events: list[RunEvent], caller_tools: set[str]) -> Resume | None:
    """The state after ``events``; None when no model call was recorded yet (the run
    starts from its input)."""
    step = 0
    appended: list[Message] = []
    usage = Usage()
    last_calls: list[ToolCall] = []
    done: set[str] = set()
    decisions: dict[str, Decision] = {}
    last_text = ""
    final_recorded = False
    for stored in events:
        event = parse(stored.type, stored.data)
        if isinstance(event, ModelResponded):
            message = Message.from_openai(event.message)
            appended.append(message)
            usage = usage + event.usage
            step = event.step
            last_calls = [c for c in message.tool_calls if c.name not in caller_tools]
            last_text = message.content or last_text
        elif isinstance(event, ToolResult):
            done.add(event.id)
            if event.usage is not None:  # an agent called as a tool: its spend is the run's
                usage = usage + event.usage
            appended.append(
                Message(role="tool", content=event.content, tool_call_id=event.id, name=event.name)
            )
        elif isinstance(event, MemoryLoaded) and event.usage is not None:
            usage = usage + event.usage  # summarising the history
        elif isinstance(event, Final):
            final_recorded = True
        elif isinstance(event, ApprovalDecided):
            decisions[event.id] = Decision(event.approved, event.by, event.comment)
    if step == 0:
        return None
    unfinished = [c for c in last_calls if c.id not in done]
    return Resume(step, appended, usage, unfinished, decisions, last_text, final_recorded)

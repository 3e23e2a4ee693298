"""Rebuild a run's conversation from its stored events, so another worker (or the
same one, after an approval) goes on from the last recorded step without repeating
a model call or a finished tool call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hangar.models.messages import Message, ToolCall
from hangar.runtime.events import EventType
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
    for event in events:
        data: dict[str, Any] = event.data
        if event.type == EventType.MODEL_RESPONSE:
            message = Message.from_openai(data["message"])
            appended.append(message)
            usage = usage + Usage.from_dict(data.get("usage", {}))
            step = int(data["step"])
            last_calls = [c for c in message.tool_calls if c.name not in caller_tools]
            last_text = message.content or last_text
        elif event.type == EventType.TOOL_RESULT:
            done.add(data["id"])
            if "usage" in data:  # an agent called as a tool: its spend is the run's
                usage = usage + Usage.from_dict(data["usage"])
            appended.append(
                Message(
                    role="tool", content=data["content"], tool_call_id=data["id"], name=data["name"]
                )
            )
        elif event.type == EventType.MEMORY and "usage" in data:
            usage = usage + Usage.from_dict(data["usage"])  # summarising the history
        elif event.type == EventType.FINAL:
            final_recorded = True
        elif event.type == EventType.APPROVAL_DECIDED:
            decisions[data["id"]] = Decision(
                data["decision"] == "approve", data.get("by", ""), data.get("comment", "")
            )
    if step == 0:
        return None
    unfinished = [c for c in last_calls if c.id not in done]
    return Resume(step, appended, usage, unfinished, decisions, last_text, final_recorded)

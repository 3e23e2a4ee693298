"""Run events: every step of a run is one of these, appended before the next begins.

Durable events are stored with a gap-free ``seq`` per run; ``delta`` events (text
as the model streams it) are transient: they reach live subscribers only, and the
stored ``model_response`` holds the same text in full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from hangar.store.records import started_data
from hangar.usage import Usage


class EventType(StrEnum):
    RUN_STARTED = "run_started"
    MODEL_REQUEST = "model_request"
    MODEL_RESPONSE = "model_response"
    MODEL_WAITING = "model_waiting"
    """A model call waits on its Model's limits, or on the pause its provider asked for."""
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    KNOWLEDGE = "knowledge"
    """Passages retrieved for the run before its first model call, and their citations."""
    MEMORY = "memory"
    """What the run remembers before its first model call: the end user's recalled
    facts, and the summary of a long session's older turns (with what writing it cost)."""
    APPROVAL_REQUESTED = "approval_requested"
    """Tool calls the policy holds for a person; the run waits, parked, until each is decided."""
    APPROVAL_DECIDED = "approval_decided"
    ERROR = "error"
    FINAL = "final"
    RUN_FINISHED = "run_finished"
    DELTA = "delta"
    """Transient; never stored."""


class StopReason(StrEnum):
    """Why a run ended, as recorded in ``runs.reason``."""

    COMPLETED = "completed"
    TOOL_CALLS = "tool_calls"
    """Succeeded by handing tool calls back to the caller (OpenAI-style caller tools)."""
    WAITING_APPROVAL = "waiting_approval"
    """Not an end: the run is parked until its held tool calls are approved or denied."""
    MAX_STEPS = "max_steps"
    MAX_TOKENS = "max_tokens"
    BUDGET_EXCEEDED = "budget_exceeded"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    PARENT_LOST = "parent_lost"
    """Cancelled: a child run whose parent's worker died while it ran. The parent,
    resumed elsewhere, is told the call was interrupted; no one awaits this run."""
    MODEL_ERROR = "model_error"
    CONFIGURATION_ERROR = "configuration_error"
    INTERNAL_ERROR = "internal_error"


# --- typed events ------------------------------------------------------------------------
#
# One frozen dataclass per event type: the loop and the worker build them, and every
# reader (the worker's accounting, replay, the run service, the OpenAI surface, the CLI)
# reads their fields. ``to_json`` and ``parse`` are the only code that knows the stored
# keys; the stored and served JSON is the same as before they existed (events stored
# by earlier versions parse: a field they lack takes its default).


def _usage(data: Mapping[str, Any], key: str = "usage") -> Usage | None:
    raw = data.get(key)
    return Usage.from_dict(dict(raw)) if isinstance(raw, Mapping) else None


@dataclass(frozen=True)
class RunStarted:
    TYPE: ClassVar[EventType] = EventType.RUN_STARTED
    worker: str = ""
    resumed: bool = False
    """It goes on from events of an earlier start (its worker died, or it was parked)."""

    def to_json(self) -> dict[str, Any]:
        return started_data({"worker": self.worker}, self.resumed)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunStarted:
        return cls(str(data.get("worker", "")), bool(data.get("resumed", False)))


@dataclass(frozen=True)
class ModelRequested:
    TYPE: ClassVar[EventType] = EventType.MODEL_REQUEST
    step: int
    model: str
    messages: int
    tools: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model,
            "messages": self.messages,
            "tools": list(self.tools),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelRequested:
        return cls(
            int(data.get("step", 0)),
            str(data.get("model", "")),
            int(data.get("messages", 0)),
            tuple(data.get("tools", ())),
        )


@dataclass(frozen=True)
class ModelResponded:
    TYPE: ClassVar[EventType] = EventType.MODEL_RESPONSE
    step: int
    model: str
    message: dict[str, Any]
    """The reply as an OpenAI chat message (``Message.from_openai`` reads it)."""
    finish_reason: str | None
    usage: Usage
    duration_ms: float

    @property
    def text(self) -> str:
        return str(self.message.get("content") or "")

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return list(self.message.get("tool_calls") or [])

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model,
            "message": self.message,
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelResponded:
        return cls(
            int(data.get("step", 0)),
            str(data.get("model", "")),
            dict(data.get("message") or {}),
            data.get("finish_reason"),
            _usage(data) or Usage(),
            float(data.get("duration_ms", 0.0)),
        )


@dataclass(frozen=True)
class ModelWaiting:
    TYPE: ClassVar[EventType] = EventType.MODEL_WAITING
    model: str
    reason: str
    """``rate_limited`` (the provider answered 429: every call to the Model pauses),
    ``max_concurrency``, ``requests_per_minute`` or ``tokens_per_minute`` (its limits)."""
    seconds: float | None = None
    """How long, when known (a pause or a bucket's refill; not a place in line)."""

    def to_json(self) -> dict[str, Any]:
        seconds = None if self.seconds is None else round(self.seconds, 3)
        return {"model": self.model, "reason": self.reason, "seconds": seconds}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelWaiting:
        seconds = data.get("seconds")
        return cls(
            str(data.get("model", "")),
            str(data.get("reason", "")),
            None if seconds is None else float(seconds),
        )


@dataclass(frozen=True)
class ToolCalled:
    TYPE: ClassVar[EventType] = EventType.TOOL_CALL
    step: int
    id: str
    name: str
    arguments: str

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolCalled:
        return cls(
            int(data.get("step", 0)),
            str(data.get("id", "")),
            str(data.get("name", "")),
            str(data.get("arguments", "")),
        )


@dataclass(frozen=True)
class ToolResult:
    TYPE: ClassVar[EventType] = EventType.TOOL_RESULT
    step: int
    id: str
    name: str
    content: str
    is_error: bool
    outcome: str
    """``ok``, ``error``, ``denied``, …: the audit's word for it."""
    duration_ms: float
    citations: tuple[dict[str, Any], ...] = ()
    child_run: str | None = None
    """The run of an agent called as a tool."""
    usage: Usage | None = None
    """What that run spent (the caller's run pays it)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "step": self.step,
            "id": self.id,
            "name": self.name,
            "content": self.content,
            "is_error": self.is_error,
            "outcome": self.outcome,
            "duration_ms": self.duration_ms,
        }
        if self.citations:
            data["citations"] = list(self.citations)
        if self.child_run is not None:
            data["child_run"] = self.child_run
        if self.usage is not None:
            data["usage"] = self.usage.to_dict()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolResult:
        is_error = bool(data.get("is_error", False))
        return cls(
            int(data.get("step", 0)),
            str(data.get("id", "")),
            str(data.get("name", "")),
            str(data.get("content", "")),
            is_error,
            str(data.get("outcome") or ("error" if is_error else "ok")),
            float(data.get("duration_ms", 0.0)),
            tuple(data.get("citations") or ()),
            data.get("child_run"),
            _usage(data),
        )


@dataclass(frozen=True)
class KnowledgeFound:
    TYPE: ClassVar[EventType] = EventType.KNOWLEDGE
    query: str
    context: str
    citations: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "context": self.context, "citations": list(self.citations)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KnowledgeFound:
        return cls(
            str(data.get("query", "")),
            str(data.get("context", "")),
            tuple(data.get("citations") or ()),
        )


@dataclass(frozen=True)
class Recalled:
    """One fact about the end user the run recalled."""

    id: str
    text: str


@dataclass(frozen=True)
class MemoryLoaded:
    TYPE: ClassVar[EventType] = EventType.MEMORY
    summary: dict[str, Any] | None = None
    """The session's older turns, summarised."""
    model: str | None = None
    """The model that wrote the summary now (absent: it was written by an earlier turn)."""
    usage: Usage | None = None
    duration_ms: float | None = None
    recalled: tuple[Recalled, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.summary is not None:
            data["summary"] = self.summary
        if self.model is not None:
            data["model"] = self.model
        if self.usage is not None:
            data["usage"] = self.usage.to_dict()
        if self.duration_ms is not None:
            data["duration_ms"] = self.duration_ms
        if self.recalled is not None:
            data["recalled"] = [{"id": m.id, "text": m.text} for m in self.recalled]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemoryLoaded:
        recalled = data.get("recalled")
        return cls(
            data.get("summary"),
            data.get("model"),
            _usage(data),
            data.get("duration_ms"),
            None
            if recalled is None
            else tuple(Recalled(str(m.get("id", "")), str(m.get("text", ""))) for m in recalled),
        )


@dataclass(frozen=True)
class HeldCall:
    """A tool call the policy holds for a person."""

    id: str
    name: str
    arguments: str
    rule: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "rule": self.rule}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeldCall:
        return cls(
            str(data.get("id", "")),
            str(data.get("name", "")),
            str(data.get("arguments", "")),
            str(data.get("rule", "")),
        )


@dataclass(frozen=True)
class ApprovalRequested:
    TYPE: ClassVar[EventType] = EventType.APPROVAL_REQUESTED
    calls: tuple[HeldCall, ...]
    usage: Usage

    def to_json(self) -> dict[str, Any]:
        return {"calls": [c.to_json() for c in self.calls], "usage": self.usage.to_dict()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalRequested:
        calls = tuple(HeldCall.from_json(c) for c in data.get("calls") or ())
        return cls(calls, _usage(data) or Usage())


@dataclass(frozen=True)
class ApprovalDecided:
    TYPE: ClassVar[EventType] = EventType.APPROVAL_DECIDED
    id: str
    name: str
    approved: bool
    by: str = ""
    comment: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "decision": "approve" if self.approved else "deny",
            "by": self.by,
            "comment": self.comment,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApprovalDecided:
        return cls(
            str(data.get("id", "")),
            str(data.get("name", "")),
            data.get("decision") == "approve",
            str(data.get("by", "")),
            str(data.get("comment", "")),
        )


@dataclass(frozen=True)
class RunError:
    TYPE: ClassVar[EventType] = EventType.ERROR
    code: str
    message: str
    hint: str | None = None
    details: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            data["hint"] = self.hint
        if self.details:
            data["details"] = self.details
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunError:
        return cls(
            str(data.get("code", "")),
            str(data.get("message", "")),
            data.get("hint"),
            data.get("details"),
        )


@dataclass(frozen=True)
class Final:
    TYPE: ClassVar[EventType] = EventType.FINAL
    text: str
    tool_calls: tuple[dict[str, Any], ...] | None = None
    """Calls handed back to the caller (its own tools), as OpenAI tool calls."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text}
        if self.tool_calls is not None:
            data["tool_calls"] = list(self.tool_calls)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Final:
        calls = data.get("tool_calls")
        return cls(str(data.get("text") or ""), None if calls is None else tuple(calls))


@dataclass(frozen=True)
class RunFinished:
    TYPE: ClassVar[EventType] = EventType.RUN_FINISHED
    status: str
    reason: str
    usage: Usage
    timing: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "usage": self.usage.to_dict(),
        }
        if self.timing is not None:
            data["timing"] = self.timing
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunFinished:
        return cls(
            str(data.get("status", "")),
            str(data.get("reason", "")),
            _usage(data) or Usage(),
            data.get("timing"),
        )


@dataclass(frozen=True)
class Delta:
    TYPE: ClassVar[EventType] = EventType.DELTA
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Delta:
        return cls(str(data.get("text", "")))


Event = (
    RunStarted
    | ModelRequested
    | ModelResponded
    | ModelWaiting
    | ToolCalled
    | ToolResult
    | KnowledgeFound
    | MemoryLoaded
    | ApprovalRequested
    | ApprovalDecided
    | RunError
    | Final
    | RunFinished
    | Delta
)

_BY_TYPE: dict[str, Any] = {
    kind.TYPE.value: kind
    for kind in (
        RunStarted,
        ModelRequested,
        ModelResponded,
        ModelWaiting,
        ToolCalled,
        ToolResult,
        KnowledgeFound,
        MemoryLoaded,
        ApprovalRequested,
        ApprovalDecided,
        RunError,
        Final,
        RunFinished,
        Delta,
    )
}


def parse(type: str, data: Mapping[str, Any]) -> Event | None:
    """The typed event a stored or streamed one is (None: a type this version does not
    know, from a newer one)."""
    kind = _BY_TYPE.get(str(type))
    event: Event | None = None if kind is None else kind.from_json(data)
    return event

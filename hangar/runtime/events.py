"""Run events: every step of a run is one of these, appended before the next begins.

Durable events are stored with a gap-free ``seq`` per run; ``delta`` events (text
as the model streams it) are transient: they reach live subscribers only, and the
stored ``model_response`` holds the same text in full.
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    RUN_STARTED = "run_started"
    MODEL_REQUEST = "model_request"
    MODEL_RESPONSE = "model_response"
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

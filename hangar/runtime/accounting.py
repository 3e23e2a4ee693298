"""What a run spends and where its time goes: usage, the ledger, metrics, timing.

The worker records each of a run's events through ``Accounts.note``: a model call's
tokens and cost go to the metrics at once and to the ledger with the call's event (in
its statement); a tool call's outcome and time go to the metrics; every event's usage
adds to the run's, kept outside the loop so a timeout or a cancel still reports it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hangar.ids import now
from hangar.runtime.events import (
    Event,
    KnowledgeFound,
    MemoryLoaded,
    ModelResponded,
    ModelWaiting,
    ToolResult,
)
from hangar.store.records import LedgerEntry, RunRecord
from hangar.telemetry.metrics import UNKNOWN_TOOL, Metrics
from hangar.usage import Usage


@dataclass
class Spent:
    """One run's usage, time and citations so far."""

    usage: Usage = field(default_factory=Usage)
    started: float = field(default_factory=time.perf_counter)
    model_ms: float = 0.0
    tool_ms: dict[int, float] = field(default_factory=dict)
    """Per step, the longest tool call: calls of one step run side by side."""
    citations: list[dict[str, Any]] = field(default_factory=list)
    """Knowledge that reached the model (retrieved, or returned by a tool), in order."""

    def cite(self, event: Event | None) -> None:
        if isinstance(event, (ToolResult, KnowledgeFound)):
            for citation in event.citations:
                if citation not in self.citations:
                    self.citations.append(citation)

    def note(self, event: Event) -> None:
        """What the event cost, took and cited."""
        self.cite(event)
        if isinstance(event, ModelResponded):
            self.model_ms += event.duration_ms
        elif isinstance(event, ToolResult):
            self.tool_ms[event.step] = max(self.tool_ms.get(event.step, 0.0), event.duration_ms)
        if isinstance(event, (ModelResponded, ToolResult, MemoryLoaded)) and (
            event.usage is not None
        ):
            self.usage = self.usage + event.usage

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


class Accounts:
    """Charges model calls to the metrics and the ledger, and counts tool calls."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def note(
        self, run: RunRecord, event: Event, spent: Spent, offered: set[str]
    ) -> LedgerEntry | None:
        """Account for one of the run's events; returns the ledger line to store with
        it (a model call's). ``offered``: the run's tools (metrics name any other call
        'unknown', so a model inventing names cannot grow the series)."""
        spent.note(event)
        if isinstance(event, ModelResponded):
            return self.charged(run, event.model, event.usage, event.duration_ms)
        if isinstance(event, MemoryLoaded) and event.usage is not None:
            return self.charged(run, event.model or "", event.usage, event.duration_ms or 0.0)
        if isinstance(event, ModelWaiting):
            self.metrics.model_waited(run.namespace, run.agent, event.model, event.reason)
        if isinstance(event, ToolResult):
            self.metrics.tool_call(
                run.namespace,
                run.agent,
                event.name if event.name in offered else UNKNOWN_TOOL,
                event.outcome,
                event.duration_ms / 1000,
            )
        return None

    def charged(self, run: RunRecord, model: str, usage: Usage, duration_ms: float) -> LedgerEntry:
        """A model call's tokens and cost: into the metrics now, and the ledger line
        (stored with the call's event, or on its own for a call outside the run's)."""
        self.metrics.model_call(run.namespace, run.agent, model, usage, duration_ms / 1000)
        return LedgerEntry(run.namespace, run.agent, run.id, model, usage, now())

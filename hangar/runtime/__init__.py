"""The engine: the agent loop, workers that drive runs, and the run service."""

from hangar.runtime.bus import BusItem, EventBus
from hangar.runtime.events import EventType, StopReason
from hangar.runtime.host import Runtime
from hangar.runtime.loop import LoopInput, Outcome, run_loop
from hangar.runtime.service import RunInput, RunService
from hangar.runtime.worker import Worker

__all__ = [
    "BusItem",
    "EventBus",
    "EventType",
    "LoopInput",
    "Outcome",
    "RunInput",
    "RunService",
    "Runtime",
    "StopReason",
    "Worker",
    "run_loop",
]

"""Events held back to be stored with a run's next one, in its statement."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from hangar.runtime.events import EventType

HOLD_SECONDS = 0.05
"""How long a model request is held back to be stored with the model's response (one
statement for both); a slower model gets its request stored on its own after this."""

Held = list[tuple[str, dict[str, Any]]]


class HeldEvents:
    """A run's events held back to be stored with its next one, in its statement: a
    model request with the response (a request lost with a worker costs nothing, the
    call is made again), the loop's ``final`` with the run's end (the answer is in the
    response). A write saved per model call.

    A held request does not wait for a slow model: after ``HOLD_SECONDS`` it is stored
    on its own (``store``), so followers see the call start, and a worker killed
    during the call leaves it recorded."""

    def __init__(self, store: Callable[[Held], Coroutine[Any, Any, None]]) -> None:
        self._store = store
        self._events: Held = []
        self._timer: asyncio.TimerHandle | None = None
        self._storing: asyncio.Task[None] | None = None

    def hold(self, type: EventType, data: dict[str, Any], *, at_most: float | None) -> None:
        """Hold an event; ``at_most`` seconds before it is stored anyway (None: until the
        next event)."""
        self._events.append((type.value, data))
        if at_most is not None and self._timer is None and self._storing is None:
            self._timer = asyncio.get_running_loop().call_later(at_most, self._store_now)

    def _store_now(self) -> None:
        self._timer = None
        events, self._events = self._events, []
        self._storing = asyncio.create_task(self._store(events), name="hangar-held-events")

    async def take(self) -> Held:
        """The events still held, to be stored now with the caller's (in order after any
        stored on their own, which this waits for: their failure is the caller's)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        storing, self._storing = self._storing, None
        if storing is not None:
            await storing
        events, self._events = self._events, []
        return events

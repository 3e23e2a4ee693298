"""In-process fan-out of run events to live subscribers (SSE streams, waiters).

The store is the truth; the bus only makes delivery prompt. A subscriber that
misses something (it subscribed late, or the run executes in another process)
catches up from the store, so nothing depends on the bus being complete. Events of
runs executing in other processes arrive as ``remote`` items (from the store's change
notices): they carry no data, only the news that the store has more to read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BusItem:
    """A stored event (``seq`` > 0) or a transient one (``seq`` == 0); ``remote``: an
    event stored by another process, to be read from the store (``seq`` 0: some may
    have been missed, catch up)."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    remote: bool = False


RESYNC = "resync"


class Doorbell:
    """Wakes the process's claimer (``Worker._dispatch``): one ring per run queued, so the
    claimer claims once per ring instead of looking again after every run it takes
    (on SQLite every claim is a write). Rings that come while it is busy are kept.
    ``ring_all`` (a notice may have been missed) and a wait that times out tell it to
    claim until nothing is left instead."""

    def __init__(self) -> None:
        self._rung = 0
        self._answered = 0
        self._all = False
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._rung += 1
        self._event.set()

    def ring_all(self) -> None:
        self._all = True
        self._event.set()

    @property
    def rung(self) -> int:
        return self._rung

    @property
    def quiet(self) -> bool:
        """No ring waits to be answered."""
        return self._rung == self._answered and not self._all

    async def wait(self, timeout: float) -> bool:
        """Until rung, or ``timeout`` seconds (runs may come due without a ring: a lease
        running out, say). True: claim once; False: claim until none is left."""
        if self._rung == self._answered and not self._all:
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._event.wait()
        if self._all or self._rung == self._answered:
            self._all = False
            return False
        self._answered += 1
        return True

    def found_none(self, rung: int) -> None:
        """A claim that began when ``rung`` rings had come found nothing: those rings are
        answered (their runs were taken elsewhere); later ones stand."""
        self._answered = max(self._answered, rung)


class EventBus:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[BusItem]]] = defaultdict(set)
        self.doorbell = Doorbell()

    def publish(self, item: BusItem) -> None:
        for queue in self._subscribers.get(item.run_id, ()):
            queue.put_nowait(item)

    def open(self, run_id: str) -> asyncio.Queue[BusItem]:
        """Start receiving a run's items; pair with ``close``."""
        queue: asyncio.Queue[BusItem] = asyncio.Queue()
        self._subscribers[run_id].add(queue)
        return queue

    def close(self, run_id: str, queue: asyncio.Queue[BusItem]) -> None:
        subscribers = self._subscribers.get(run_id)
        if subscribers is not None:
            subscribers.discard(queue)
            if not subscribers:
                del self._subscribers[run_id]

    @contextmanager
    def subscribe(self, run_id: str) -> Iterator[asyncio.Queue[BusItem]]:
        queue = self.open(run_id)
        try:
            yield queue
        finally:
            self.close(run_id, queue)

    def resync(self) -> None:
        """Every subscriber re-reads its run from the store (notices may have been lost)."""
        for run_id, queues in self._subscribers.items():
            for queue in queues:
                queue.put_nowait(BusItem(run_id, 0, RESYNC, {}, remote=True))

    def wake_workers(self, *, all: bool = False) -> None:
        """A run was queued (``all``: any number may have been, a missed notice)."""
        if all:
            self.doorbell.ring_all()
        else:
            self.doorbell.ring()

"""Teardown in the background: once a sandbox is marked dead nobody needs to wait
while its runtime is taken down (runsc takes a second, a process's cgroup a few
milliseconds to let go, a monty worker a round trip to go back to its pool), so
``kill`` returns at once and the work finishes here.

Blocking work goes to one daemon thread fed by a queue rather than to the event
loop's executor: a finished teardown then wakes nothing, where ``to_thread`` would
wake the loop once per sandbox, a cost a sub-millisecond sandbox feels.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

_pending: set[asyncio.Task[None]] = set()
_blocking: queue.Queue[Callable[[], None]] = queue.Queue()
_worker: threading.Thread | None = None
_worker_lock = threading.Lock()


def later(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion in the background."""
    task = asyncio.create_task(work)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


def later_blocking(work: Callable[[], None]) -> None:
    """Run a blocking function on the teardown thread."""
    global _worker
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_drain, name="hangar-teardown", daemon=True)
            _worker.start()
    _blocking.put(work)


_deferred: deque[Callable[[], None]] = deque()
_handover: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
"""The one pending timer (and its loop) that hands deferred work to the teardown
thread: a burst of kills sets one, not one each."""


def deferred(work: Callable[[], None], delay: float = 0.05) -> None:
    """Run blocking ``work`` within ``delay`` seconds: on the teardown thread then,
    or sooner on a worker thread that is about to do the same kind of work anyway
    (``run_deferred``), saving a thread wake-up. A monty worker returned to its pool
    just before the next checkout is reused at once, instead of a second one being
    woken."""
    global _handover
    _deferred.append(work)
    loop = asyncio.get_running_loop()
    if _handover is None or _handover[0] is not loop or _handover[1].when() < loop.time():
        _handover = (loop, loop.call_later(delay, _hand_over_deferred))


def run_deferred() -> None:
    """Run every deferred teardown now, on the calling (worker) thread."""
    while True:
        try:
            work = _deferred.popleft()
        except IndexError:
            return
        try:
            work()
        except Exception:
            log.exception("a sandbox teardown failed")


def _hand_over_deferred() -> None:
    if _deferred:
        later_blocking(run_deferred)


def _drain() -> None:
    while True:
        work = _blocking.get()
        try:
            work()
        except Exception:
            log.exception("a sandbox teardown failed")
        finally:
            _blocking.task_done()


async def settle_teardowns() -> None:
    """Wait for background teardowns (tests and shutdown use it)."""
    _hand_over_deferred()
    while _pending or _blocking.unfinished_tasks:
        if _pending:
            await asyncio.gather(*_pending, return_exceptions=True)
        if _blocking.unfinished_tasks:
            await asyncio.to_thread(_blocking.join)

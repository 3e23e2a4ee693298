"""Workers: claim queued runs from the store and drive them through the agent loop.

Workers hold no state a run needs: everything is in the store, so any worker in
any process can take any run. This module is the process's side of that: its run
slots, their claims (chosen by ``runtime/queue.py``), the leases it holds and renews,
and cancelling what runs here. Executing one run is ``runtime/execution.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from hangar.config import Settings
from hangar.errors import LeaseLostError
from hangar.runtime.bus import BusItem, EventBus
from hangar.runtime.events import RunStarted
from hangar.runtime.execution import RunExecutor, cancelled
from hangar.runtime.queue import FairShare
from hangar.store.base import RunQueue
from hangar.store.records import ClaimRequest, RunRecord
from hangar.usage import Usage

log = logging.getLogger("hangar.runtime")

POLL_SECONDS = 1.0
STATISTICS_SECONDS = 2.0
"""How often a worker process asks whether the queue's statistics are stale."""


def worker_id() -> str:
    """This process's name among workers: its slots claim as ``<id>/<slot>``."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    def __init__(
        self,
        store: RunQueue,
        bus: EventBus,
        settings: Settings,
        queue: FairShare,
        executor: RunExecutor,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.queue = queue
        self.executor = executor
        self.id = executor.worker_id
        self.running: dict[str, asyncio.Task[RunRecord | None]] = {}
        self._last_busy = time.monotonic()
        self._slots: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------

    def start(self, concurrency: int) -> None:
        self.bus.doorbell.limit = concurrency
        for i in range(concurrency):
            self._slots.append(asyncio.create_task(self._slot(i), name=f"hangar-worker-{i}"))
        self._slots.append(asyncio.create_task(self._heartbeat(), name="hangar-heartbeat"))
        self._slots.append(asyncio.create_task(self._statistics(), name="hangar-statistics"))

    async def stop(self) -> None:
        for task in self._slots:
            task.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)
        self._slots.clear()

    async def _statistics(self) -> None:
        """Keep the database's picture of the queue current, so its plans for the claim
        follow the queue's growth (``Store.refresh_queue_statistics``)."""
        while True:
            await asyncio.sleep(STATISTICS_SECONDS)
            try:
                if await self.store.refresh_queue_statistics():
                    log.info("the runs table's statistics were stale; analysed it")
            except Exception:
                log.exception("refreshing the queue's statistics failed; retrying")

    # --- leases -----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Renew the leases of the runs held here, a third of a lease apart."""
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("renewing run leases failed; retrying")

    async def renew_leases(self) -> set[str]:
        """Renew the leases of the runs held here once; returns those found taken over
        (this process stalled past a lease), which are stopped here at once (their
        writes are refused anyway: the store checks the holder)."""
        holders = self.executor.holders
        held = dict(holders)
        renewed = await self.store.renew_leases(held, self.settings.lease_seconds)
        lost = set()
        for run_id in set(held) - renewed:
            self.queue.ended(run_id)  # taken over, or ended here or elsewhere
            # Not renewed as it ended here meanwhile (its end stored, its slot not yet
            # back to forget it): nothing was taken over.
            task = self.running.get(run_id)
            if task is None or task.done() or run_id in self.executor.ending:
                continue
            if holders.get(run_id) == held[run_id]:
                log.warning("run %s was taken over by another worker; stopping it", run_id)
                self.cancel_local(run_id)
                lost.add(run_id)
        return lost

    # --- slots ------------------------------------------------------------------------

    def _claim_request(self, index: int) -> ClaimRequest:
        return ClaimRequest(
            f"{self.id}/{index}",
            self.settings.lease_seconds,
            self.settings.namespace_max_running,
            started={"worker": self.id},
        )

    async def _slot(self, index: int) -> None:
        claim = self._claim_request(index)
        run: RunRecord | None = None
        while True:
            if run is None:
                try:
                    run = await self.queue.claim(claim)
                except Exception:
                    log.exception("claiming a run failed; retrying")
                if run is None:
                    await self.bus.doorbell.wait(POLL_SECONDS)
                    continue
            run = await self._take(run, claim)

    async def _take(self, run: RunRecord, claim: ClaimRequest) -> RunRecord | None:
        """Execute a claimed run to its end; returns the slot's next run when its end
        claimed one (``Store.finish_and_claim``)."""
        resumed = run.last_seq > 1  # its run_started, stored by the claim, is last
        started = RunStarted(self.id, resumed)
        self.bus.publish(BusItem(run.id, run.last_seq, started.TYPE.value, started.to_json()))
        if run.parent_id is not None:
            return await self.executor.stop_orphan(run, claim)
        task = asyncio.create_task(
            self.executor.execute(run, resumed=resumed, then=claim), name=f"run-{run.id}"
        )
        holders = self.executor.holders
        self.running[run.id] = task
        self._last_busy = time.monotonic()
        holders[run.id] = run.worker or ""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()  # this slot is stopping: take the run down with it
                raise
            if task.cancelled():
                # Cancelled before ``execute`` could catch it (before its first
                # step): the run must still end, recorded as cancelled.
                with contextlib.suppress(LeaseLostError):  # unless it ended after all
                    await self.executor.finish(run, cancelled(Usage()))
            return None
        finally:
            self.running.pop(run.id, None)
            holders.pop(run.id, None)
            self._last_busy = time.monotonic()

    def idle_seconds(self) -> float:
        """How long this process has had no run to execute (0 while it has one)."""
        return 0.0 if self.running else time.monotonic() - self._last_busy

    def cancel_local(self, run_id: str) -> bool:
        """Cancel a run executing in this process at once; False if it runs elsewhere.
        A run whose end is being stored ends as it was going to: cancelled then, the
        end would be stored twice, and the next run its statement claimed, lost."""
        task = self.running.get(run_id)
        if task is None:
            return False
        if run_id not in self.executor.ending:
            task.cancel()
        return True

"""Workers: claim queued runs from the store and drive them through the agent loop.

Workers hold no state a run needs: everything is in the store, so any worker in
any process can take any run. This module is the process's side of that: its
claimer and the task each run executes in, their claims (chosen by
``runtime/queue.py``), the leases it holds and renews, and cancelling what runs here.
Executing one run is ``runtime/execution.py``'s.
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
HELD_POLL_SECONDS = 0.1
"""How often the claimer looks while runs are held back for their Model: a slot freed
rings at once, a minute's requests or tokens coming back does not."""
STATISTICS_SECONDS = 2.0
"""How often a worker process asks whether the queue's statistics are stale."""


def worker_id() -> str:
    """This process's name among workers: its claims are held as ``<id>/<n>``."""
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
        self._tasks: list[asyncio.Task[None]] = []
        self._carriers: set[asyncio.Task[None]] = set()
        """One task per run executing here (see ``_dispatch``)."""
        self._limit = 0
        self._freed = asyncio.Event()
        self._claims = 0
        self._found_none = False
        """The last claim found nothing queued (and no ring has come since, if the
        doorbell is quiet): a new run may be handed over at once (``hand_off``)."""
        self._handing = 0
        """Runs handed over and not adopted yet: they hold a place under the limit."""

    # --- lifecycle ------------------------------------------------------------------

    def start(self, concurrency: int) -> None:
        """Execute up to ``concurrency`` runs at once."""
        self._limit = concurrency
        if concurrency:
            self._tasks.append(asyncio.create_task(self._dispatch(), name="hangar-dispatch"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="hangar-heartbeat"))
        self._tasks.append(asyncio.create_task(self._statistics(), name="hangar-statistics"))

    async def stop(self) -> None:
        self._limit = 0  # no run is handed over to a worker stopping
        tasks = [*self._tasks, *self._carriers]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A run launched whose carrier had not started yet: its carrier took nothing down.
        left = [run for run in self.running.values() if not run.done()]
        for run in left:
            run.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        self._tasks.clear()
        self._carriers.clear()

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
            # Not renewed as it ended here meanwhile (its end stored, its task not yet
            # back to forget it): nothing was taken over.
            task = self.running.get(run_id)
            if task is None or task.done() or run_id in self.executor.ending:
                continue
            if holders.get(run_id) == held[run_id]:
                log.warning("run %s was taken over by another worker; stopping it", run_id)
                self.cancel_local(run_id)
                lost.add(run_id)
        return lost

    # --- claims and runs ----------------------------------------------------------------

    def _claim_request(self) -> ClaimRequest:
        """A claim under a name of its own (``<process>/<n>``): the run it takes, and
        each run the same task takes next when that one ends, are held under it."""
        self._claims += 1
        return ClaimRequest(
            f"{self.id}/{self._claims}",
            self.settings.lease_seconds,
            self.settings.namespace_max_running,
            started={"worker": self.id},
        )

    async def _dispatch(self) -> None:
        """Claim runs while fewer than the limit execute here, each in a task of its
        own. A run waiting on its model costs that task and nothing else, so the limit
        can be high: what is scarce (a model's capacity, a namespace's share) is
        limited where it is. When its run ends, a task claims the next in the same
        statement (``Store.finish_and_claim``) and goes on with it, or ends."""
        drain = True  # at start: runs may be queued already
        while True:
            if len(self._carriers) + self._handing >= self._limit:
                self._freed.clear()
                await self._freed.wait()
                continue
            if not drain:
                poll = HELD_POLL_SECONDS if self.queue.held else POLL_SECONDS
                drain = not await self.bus.doorbell.wait(poll)
            claim = self._claim_request()
            rung = self.bus.doorbell.rung
            self._found_none = False
            try:
                run = await self.queue.claim(claim)
            except Exception:
                log.exception("claiming a run failed; retrying")
                await self.bus.doorbell.wait(POLL_SECONDS)
                drain = True
                continue
            if run is None:
                self.bus.doorbell.found_none(rung)
                self._found_none = True
                drain = False
                continue
            self._carry_from(run, claim)

    def hand_off(self, run_id: str, namespace: str, agent: str) -> ClaimRequest | None:
        """A claim for a run about to be created, if this process can execute it at
        once: it has room, and nothing waits in the queue (its last claim found none
        and no run was queued since), so the claim would choose this run anyway. The
        caller creates the run held under that claim (``Store.create_run`` with its
        ``run_started``) and gives it to ``adopt``, or gives the claim back to
        ``release``: no wake-up, no look at the queue, no claim statement, and the run
        is recorded as any claimed run is (if this process dies, its lease runs out and
        another takes it over). None: queue the run (also when the agent's Model has no
        room here now: the run waits queued)."""
        room = len(self._carriers) + self._handing < self._limit
        if not (room and self._found_none and self.bus.doorbell.quiet):
            return None
        if f"{namespace}/{agent}" in self.queue.held_now():
            return None
        self._handing += 1
        self.queue.claimed(run_id, namespace, agent)
        return self._claim_request()

    def adopt(self, run: RunRecord, claim: ClaimRequest) -> None:
        """Execute a run created under a ``hand_off`` claim."""
        self._handing -= 1
        self._carry_from(run, claim)

    def release(self, claim: ClaimRequest, run_id: str) -> None:
        """Give back a ``hand_off`` claim whose run was not created."""
        self._handing -= 1
        self.executor.models.settle(run_id)
        self._freed.set()

    def _carry_from(self, run: RunRecord, claim: ClaimRequest) -> None:
        task = self._launch(run, claim)
        carrier = asyncio.create_task(self._carry(run, claim, task), name=f"hangar-{claim.worker}")
        self._carriers.add(carrier)
        carrier.add_done_callback(self._carried)

    async def _carry(
        self, run: RunRecord, claim: ClaimRequest, task: asyncio.Task[RunRecord | None]
    ) -> None:
        while (following := await self._follow(run, task)) is not None:
            run, task = following, self._launch(following, claim)

    def _carried(self, carrier: asyncio.Task[None]) -> None:
        self._carriers.discard(carrier)
        self._freed.set()
        if not carrier.cancelled() and carrier.exception() is not None:
            log.error("a run's task failed", exc_info=carrier.exception())

    def _launch(self, run: RunRecord, claim: ClaimRequest) -> asyncio.Task[RunRecord | None]:
        """Start executing a claimed run, known at once as running here (a cancel that
        comes before its first step finds it)."""
        resumed = run.last_seq > 1  # its run_started, stored by the claim, is last
        started = RunStarted(self.id, resumed)
        self.bus.publish(BusItem(run.id, run.last_seq, started.TYPE.value, started.to_json()))
        if run.parent_id is not None:
            self.executor.models.settle(run.id)
            return asyncio.create_task(self.executor.stop_orphan(run, claim))
        task = asyncio.create_task(
            self.executor.execute(run, resumed=resumed, then=claim), name=f"run-{run.id}"
        )
        self.running[run.id] = task
        self._last_busy = time.monotonic()
        self.executor.holders[run.id] = run.worker or ""
        return task

    async def _follow(
        self, run: RunRecord, task: asyncio.Task[RunRecord | None]
    ) -> RunRecord | None:
        """Wait for a launched run's end; returns the next run when its end claimed one
        (``Store.finish_and_claim``)."""
        if run.parent_id is not None:
            return await task  # an orphan, stopped at once
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                task.cancel()  # this process is stopping: take the run down with it
                raise
            if task.cancelled():
                # Cancelled before ``execute`` could catch it (before its first
                # step): the run must still end, recorded as cancelled.
                self.executor.models.settle(run.id)
                with contextlib.suppress(LeaseLostError):  # unless it ended after all
                    await self.executor.finish(run, cancelled(Usage()))
            return None
        finally:
            self.running.pop(run.id, None)
            self.executor.holders.pop(run.id, None)
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

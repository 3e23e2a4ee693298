"""Which namespace's run a worker takes next: fair share, from a look at the queue.

The store's claim statement can choose fairly on its own (highest priority, then the
namespace with the fewest runs running, then the oldest), but weighing every namespace
in every claim cost busy workers a third of their throughput. So a process looks at
the queue now and then, chooses the namespace here as the statement would, and asks
the store for that namespace's next run: one index probe. This is runtime policy; the
store only executes the statements (``RunQueue.claim_run(next_of=...)``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from hangar.store.base import RunQueue
from hangar.store.records import ClaimRequest, QueueHead, RunRecord, RunStatus

FAIR_SHARE_SECONDS = 0.1
"""How long a look at the queue stands. Within it, a namespace that starts queueing
waits at most this long to be part of the fair choice (at once for runs queued through
this process, or announced to it on PostgreSQL), and so do a namespace's higher
priority, a Quota's new limit applied through another process, a run whose worker died
(its lease ran out up to this long ago), and runs other processes claimed or ended."""


class FairShare:
    """One process's claims: chosen from its last look at the queue, which it keeps
    current with the runs it claims and ends itself and with the changes its store
    tells it of (``RunQueue.watch_queue``). Runs of the agents ``held_back`` names
    (``namespace/agent``: their Model has no room here now) stay queued."""

    def __init__(
        self,
        store: RunQueue,
        held_back: Callable[[int], frozenset[str]] | None = None,
        on_claimed: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.store = store
        self._held_back = held_back
        """The agents to hold back, given the claims in flight (``ModelCache.held_back``)."""
        self._on_claimed = on_claimed
        """Told of each run claimed here (id, namespace, agent), before any other claim
        is chosen (``ModelCache.expect``)."""
        self.held: frozenset[str] = frozenset()
        """The agents whose runs the last claim left queued."""
        self._claiming = 0
        """Claims in flight: each may bring a run for any Model with room."""
        self._until = 0.0
        """Until when (monotonic) claims choose from the last look."""
        self._heads: dict[str, list[int]] | None = None
        """The last look: namespaces with queued runs, to ``[priority, running]``
        (None: let the claim's own statement choose)."""
        self._claimed_here: dict[str, str] = {}
        """Runs claimed here and running, to their namespaces."""
        self._changes = 0
        """Changes seen here to what the choice depends on (a look taken while one
        came in may be stale already)."""
        store.watch_queue(self.changed)

    async def claim(self, claim: ClaimRequest) -> RunRecord | None:
        """The next run to execute here, or None."""
        self._look_held()
        self._claiming += 1
        try:
            next_of = await self._choose(claim.max_running)
            if next_of is not None:
                run = await self._claim(claim, next_of)
                if run is not None:
                    return run
                self.changed(None)  # its runs are taken: look again
            return await self._claim(claim, None)
        finally:
            self._claiming -= 1

    async def finish_and_claim(
        self, run_id: str, status: RunStatus, claim: ClaimRequest, **ending: Any
    ) -> tuple[RunRecord, RunRecord | None]:
        """End a run held here and claim the next for the same task
        (``RunQueue.finish_and_claim``); None when there was none, or the chosen
        namespace's runs were taken meanwhile (the next claim looks again)."""
        self.ended(run_id)  # before the next claim is chosen
        self._look_held()
        self._claiming += 1
        try:
            next_of = await self._choose(claim.max_running)
            claim = dataclasses.replace(claim, held_back=self.held)
            done, claimed = await self.store.finish_and_claim(
                run_id, status, claim, next_of=next_of, **ending
            )
        finally:
            self._claiming -= 1
        if claimed is not None:
            return done, self._running_here(claimed)
        if next_of is not None:  # its runs are taken: the next claim looks again
            self.changed(None)
        return done, None

    def ended(self, run_id: str) -> None:
        """A run claimed here ended, was parked, or was taken over: it no longer counts
        as running in its namespace."""
        namespace = self._claimed_here.pop(run_id, None)
        if namespace is not None and self._heads is not None and namespace in self._heads:
            self._heads[namespace][1] -= 1

    def changed(self, namespace: str | None) -> None:
        """A run was queued in ``namespace`` (None: anything the choice depends on may
        have changed): the next claim looks at the queue again, unless the namespace is
        among those it chooses from already."""
        self._changes += 1
        if namespace is None or self._heads is None or namespace not in self._heads:
            self._until, self._heads = 0.0, None

    def held_now(self) -> frozenset[str]:
        """The agents whose runs a claim now would leave queued."""
        self._look_held()
        return self.held

    def claimed(self, run_id: str, namespace: str, agent: str) -> None:
        """A run was taken for this process (claimed, or handed over)."""
        if self._on_claimed is not None:
            self._on_claimed(run_id, namespace, agent)

    def _look_held(self) -> None:
        """Which agents' runs to leave queued now; a change makes the last look at the
        queue stale (its heads counted them, or not)."""
        if self._held_back is None:
            return
        held = self._held_back(self._claiming)
        if held != self.held:
            self.held = held
            self.changed(None)

    async def _claim(self, claim: ClaimRequest, next_of: str | None) -> RunRecord | None:
        run = await self.store.claim_run(
            claim.worker,
            claim.lease_seconds,
            claim.max_running,
            started=claim.started,
            next_of=next_of,
            held_back=self.held,
        )
        return None if run is None else self._running_here(run)

    async def _choose(self, max_running: int | None) -> str | None:
        """The namespace to take the next run of, or None (the claim's statement
        chooses). Only while no limit applies (neither ``max_running`` nor a Quota:
        limits are counted exactly, by the claim) and no run's lease ran out. Looked at
        afresh every ``FAIR_SHARE_SECONDS`` at most, or at once after a change seen
        here that may have made the look wrong."""
        if max_running is not None:
            return None
        heads = self._heads
        if time.monotonic() >= self._until:
            changes = self._changes
            heads = _heads(await self.store.queue_heads(self.held))
            if changes == self._changes:  # else it may be stale already
                self._until, self._heads = time.monotonic() + FAIR_SHARE_SECONDS, heads
        if not heads:
            return None
        chosen = heads
        return min(chosen, key=lambda ns: (-chosen[ns][0], chosen[ns][1], ns))

    def _running_here(self, run: RunRecord) -> RunRecord:
        self.claimed(run.id, run.namespace, run.agent)
        self._claimed_here[run.id] = run.namespace
        if self._heads is not None and run.namespace in self._heads:
            self._heads[run.namespace][1] += 1
        return run


def _heads(look: list[QueueHead] | None) -> dict[str, list[int]] | None:
    if not look:
        return None
    return {head.namespace: [head.priority, head.running] for head in look}

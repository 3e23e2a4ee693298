"""Scheduled Triggers: a cron expression starts one run at each of its times.

Every worker process runs this clock. A fire time's run id is derived from the
trigger and the time, so however many processes see the time come, one run starts.
Times that passed while no process was up are skipped, not caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

from hangar.errors import ConflictError, HangarError
from hangar.runtime.service import RunInput, RunService
from hangar.runtime.triggers import run_id_for
from hangar.spec.trigger import Trigger, TriggerSpec
from hangar.store.base import ResourceStore
from hangar.store.records import StoredResource

log = logging.getLogger("hangar.schedules")
TICK_SECONDS = 0.5


@dataclass
class _Plan:
    """One Trigger as this clock last read it: which version, its schedule if it has
    one, and the next time that schedule fires."""

    uid: str
    generation: int
    spec: TriggerSpec | None
    """None: the stored spec is not one this version reads (logged once)."""
    next_at: datetime | None


class Schedules:
    def __init__(self, store: ResourceStore, runs: RunService) -> None:
        self.store = store
        self.runs = runs
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._tick_forever(), name="hangar-schedules")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick_forever(self) -> None:
        while True:
            try:
                await self.tick(datetime.now(UTC))
            except Exception:
                log.exception("a schedule tick failed; retrying")
            await asyncio.sleep(TICK_SECONDS)

    async def tick(self, now: datetime) -> list[str]:
        """Start the runs whose times came since the last tick; return their ids.

        A Trigger's spec is read and its next time worked out when this clock first
        sees it or a new version of it, not on every tick: a tick over unchanged
        Triggers none of which is due compares times and nothing else."""
        started = []
        seen = set()
        for stored in await self.store.list_all_resources(Trigger.KIND):
            key = (stored.namespace, stored.name)
            seen.add(key)
            plan = self._plans.get(key)
            if plan is None or (plan.uid, plan.generation) != (stored.uid, stored.generation):
                plan = self._plans[key] = _plan(stored, plan, now)
            while plan.spec is not None and plan.next_at is not None and plan.next_at <= now:
                at = plan.next_at
                run_id = await self._fire(stored.namespace, stored.name, plan.spec, at)
                if run_id is not None:
                    started.append(run_id)
                plan.next_at = _next(plan.spec, at)
        for gone in self._plans.keys() - seen:
            del self._plans[gone]
        return started

    async def _fire(self, namespace: str, name: str, spec: TriggerSpec, at: datetime) -> str | None:
        run_id = run_id_for(namespace, name, "schedule", int(at.timestamp()))
        text = spec.input.replace("{body}", at.isoformat())
        try:
            await self.runs.start(
                namespace, spec.agent, RunInput([{"role": "user", "content": text}]), run_id=run_id
            )
        except ConflictError:
            return None  # another process started this time's run
        except HangarError as exc:
            log.warning("schedule %s/%s at %s: %s", namespace, name, at, exc.message)
            return None
        return run_id


def _next(spec: TriggerSpec | None, after: datetime) -> datetime | None:
    if spec is None or spec.schedule is None:
        return None
    return croniter(spec.schedule, after).get_next(datetime)


def _plan(stored: StoredResource, last: _Plan | None, now: datetime) -> _Plan:
    """The plan of a Trigger first seen now or changed since ``last``: a schedule
    counts from now (times before this clock saw it are not caught up), unless only
    something else about the Trigger changed."""
    try:
        spec: TriggerSpec | None = TriggerSpec.model_validate(stored.spec)
    except ValueError as exc:  # one unreadable Trigger must not stop the others' clocks
        log.warning("trigger %s/%s is not read: %s", stored.namespace, stored.name, exc)
        spec = None
    if (
        last is not None
        and last.spec is not None
        and spec is not None
        and (last.spec.schedule == spec.schedule)
    ):
        next_at = last.next_at
    else:
        next_at = _next(spec, now)
    return _Plan(stored.uid, stored.generation, spec, next_at)

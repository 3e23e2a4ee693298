"""Scheduled Triggers: a cron expression starts one run at each of its times.

Every worker process runs this clock. A fire time's run id is derived from the
trigger and the time, so however many processes see the time come, one run starts.
Times that passed while no process was up are skipped, not caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from croniter import croniter

from hangar.errors import ConflictError, HangarError
from hangar.runtime.service import RunInput, RunService
from hangar.runtime.triggers import run_id_for
from hangar.spec.trigger import Trigger, TriggerSpec
from hangar.store.base import Store

log = logging.getLogger("hangar.schedules")
TICK_SECONDS = 0.5


class Schedules:
    def __init__(self, store: Store, runs: RunService) -> None:
        self.store = store
        self.runs = runs
        self._since: dict[tuple[str, str, str], datetime] = {}
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
        """Start the runs whose times came since the last tick; return their ids."""
        started = []
        for stored in await self.store.list_all_resources(Trigger.KIND):
            spec = TriggerSpec.model_validate(stored.spec)
            if spec.schedule is None:
                continue
            key = (stored.namespace, stored.name, spec.schedule)
            since = self._since.setdefault(key, now)
            times = croniter(spec.schedule, since)
            while (at := times.get_next(datetime)) <= now:
                run_id = await self._fire(stored.namespace, stored.name, spec, at)
                if run_id is not None:
                    started.append(run_id)
            self._since[key] = now
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

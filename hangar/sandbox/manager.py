"""Sandbox sessions and warm pools.

Sessions belong to a namespace: one namespace can never reach another's
sandbox, whatever id it guesses. Warm pools keep sandboxes of a template
already started, so acquiring one costs a dictionary lookup, and refill in the
background. Idle sessions are reaped after their template's idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from hangar.errors import SandboxNotFoundError
from hangar.sandbox.base import Sandbox
from hangar.sandbox.registry import backend, default_backend
from hangar.sandbox.teardown import settle_teardowns
from hangar.spec.sandbox import SandboxTemplateSpec

log = logging.getLogger("hangar.sandbox")


@dataclass
class Session:
    namespace: str
    template: str
    spec: SandboxTemplateSpec
    sandbox: Sandbox
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)


def default_template() -> SandboxTemplateSpec:
    return SandboxTemplateSpec.model_validate({"backend": default_backend()})


REFILL_DELAY_SECONDS = 0.005


class SandboxManager:
    def __init__(self, reap_interval: float = 5.0) -> None:
        self.sessions: dict[str, Session] = {}
        self.pools: dict[str, deque[Sandbox]] = {}
        self._pool_specs: dict[str, SandboxTemplateSpec] = {}
        self._refills: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.reap_interval = reap_interval

    # --- pools ------------------------------------------------------------------------

    @staticmethod
    def pool_key(spec: SandboxTemplateSpec) -> str:
        return spec.model_dump_json()

    async def warm(self, spec: SandboxTemplateSpec) -> None:
        """Fill the template's pool up to its ``warmPool`` size."""
        key = self.pool_key(spec)
        pool = self.pools.setdefault(key, deque())
        self._pool_specs[key] = spec
        missing = spec.warm_pool - len(pool)
        if missing <= 0:
            return
        started = await asyncio.gather(
            *(self._start_warm(spec) for _ in range(missing)), return_exceptions=True
        )
        for item in started:
            if isinstance(item, BaseException):
                log.warning("warm pool start failed: %s", item)
            else:
                pool.append(item)

    @staticmethod
    async def _start_warm(spec: SandboxTemplateSpec) -> Sandbox:
        sandbox = await backend(spec.backend).start(spec)
        try:
            await sandbox.warm_up()
        except BaseException:
            await sandbox.kill()
            raise
        return sandbox

    def warm_soon(self, spec: SandboxTemplateSpec) -> None:
        """Fill a template's warm pool in the background (after apply, at start-up)."""
        if spec.warm_pool > 0:
            self._refill(spec)

    async def settle(self) -> None:
        """Wait until the pools' background refills are done."""
        while self._refills:
            await asyncio.gather(*self._refills, return_exceptions=True)

    def _refill(self, spec: SandboxTemplateSpec) -> None:
        task = asyncio.create_task(self._refill_soon(spec))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill_soon(self, spec: SandboxTemplateSpec) -> None:
        # Give the sandbox just handed out its first call before starting another,
        # so a refill does not compete with the request that caused it.
        await asyncio.sleep(REFILL_DELAY_SECONDS)
        await self.warm(spec)

    async def _acquire(self, spec: SandboxTemplateSpec) -> Sandbox:
        pool = self.pools.get(self.pool_key(spec))
        while pool:
            sandbox = pool.popleft()
            if sandbox.alive:
                self._refill(spec)
                return sandbox
        if spec.warm_pool:
            self._refill(spec)
        return await backend(spec.backend).start(spec)

    # --- sessions -----------------------------------------------------------------------

    async def create(
        self, namespace: str, spec: SandboxTemplateSpec | None = None, template: str = "default"
    ) -> Session:
        spec = spec or default_template()
        sandbox = await self._acquire(spec)
        session = Session(namespace, template, spec, sandbox)
        self.sessions[sandbox.id] = session
        self._ensure_reaper()
        return session

    def get(self, namespace: str, sandbox_id: str) -> Session:
        session = self.sessions.get(sandbox_id)
        if session is None or session.namespace != namespace:
            raise SandboxNotFoundError(
                f"sandbox {sandbox_id!r} not found in namespace {namespace!r}",
                hint="it may have been deleted or reaped after its idle timeout",
            )
        session.last_used = time.monotonic()
        return session

    def list(self, namespace: str) -> list[Session]:
        return [s for s in self.sessions.values() if s.namespace == namespace]

    async def delete(self, namespace: str, sandbox_id: str) -> None:
        session = self.get(namespace, sandbox_id)
        self.sessions.pop(sandbox_id, None)
        await session.sandbox.kill()

    async def reap(self) -> int:
        """Kill sessions idle past their template's timeout, and dead ones; return how many."""
        now = time.monotonic()
        doomed = [
            sid
            for sid, s in self.sessions.items()
            if not s.sandbox.alive or now - s.last_used > s.spec.idle_timeout_seconds
        ]
        for sid in doomed:
            session = self.sessions.pop(sid)
            await session.sandbox.kill()
        return len(doomed)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_forever())

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval)
            try:
                await self.reap()
            except Exception:
                log.exception("reaping sandboxes failed")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for task in list(self._refills):
            task.cancel()
        await asyncio.gather(*self._refills, return_exceptions=True)
        sandboxes = [s.sandbox for s in self.sessions.values()]
        sandboxes += [sb for pool in self.pools.values() for sb in pool]
        self.sessions.clear()
        self.pools.clear()
        await asyncio.gather(*(sb.kill() for sb in sandboxes), return_exceptions=True)
        await settle_teardowns()

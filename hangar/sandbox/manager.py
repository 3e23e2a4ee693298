"""Sandbox sessions and warm pools.

Sessions belong to a namespace: one namespace can never reach another's
sandbox, whatever id it guesses. Warm pools keep sandboxes of a template
already started, so acquiring one costs a dictionary lookup, and refill in the
background; a pooled sandbox has never been used, so namespaces whose templates
are alike share a pool (and its egress policy: pools are kept per policy).
Idle sessions are reaped after their template's idle timeout.

What a namespace may start is bounded by the administrator's ceilings
(``hangar.admission``): every limit of a template, checked again here since a
template may predate a ceiling, and how many live sandboxes it may hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from hangar.admission import Admission
from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.errors import (
    AdmissionDeniedError,
    ResourceNotFoundError,
    SandboxLimitError,
    SandboxNotFoundError,
)
from hangar.sandbox.base import Sandbox
from hangar.sandbox.registry import backend, default_backend
from hangar.sandbox.teardown import settle_teardowns
from hangar.spec.sandbox import SandboxTemplate, SandboxTemplateSpec
from hangar.store.base import ResourceStore

log = logging.getLogger("hangar.sandbox")


@dataclass
class Session:
    namespace: str
    template: str
    spec: SandboxTemplateSpec
    sandbox: Sandbox
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)


async def default_template() -> SandboxTemplateSpec:
    return SandboxTemplateSpec.model_validate({"backend": await default_backend()})


async def template_spec(
    store: ResourceStore, namespace: str, name: str | None
) -> SandboxTemplateSpec:
    """A namespace's SandboxTemplate by name (None: the host's default)."""
    if name is None:
        return await default_template()
    stored = await store.get_resource(namespace, SandboxTemplate.KIND, name)
    if stored is None:
        raise ResourceNotFoundError(
            f"SandboxTemplate {name!r} not found in namespace {namespace!r}",
            hint="apply the template, or remove the reference to use the default",
        )
    return SandboxTemplateSpec.model_validate(stored.spec)


REFILL_DELAY_SECONDS = 0.005


class SandboxManager:
    def __init__(self, reap_interval: float = 5.0, admission: Admission | None = None) -> None:
        self.admission = admission or Admission(None)
        self.sessions: dict[str, Session] = {}
        self.pools: dict[str, deque[Sandbox]] = {}
        self._pool_specs: dict[str, SandboxTemplateSpec] = {}
        self._refills: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.Task[None] | None = None
        self.reap_interval = reap_interval
        self._starting: dict[str, int] = {}
        """Sandboxes being started per namespace: counted as live (see ``create``)."""
        self._freed = asyncio.Event()
        """Set (and replaced) when a session goes: wakes creators waiting for room."""

    # --- pools ------------------------------------------------------------------------

    @staticmethod
    def pool_key(spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY) -> str:
        return spec.model_dump_json() + repr(policy)

    async def warm(self, spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY) -> None:
        """Fill the template's pool up to its ``warmPool`` size."""
        key = self.pool_key(spec, policy)
        pool = self.pools.setdefault(key, deque())
        self._pool_specs[key] = spec
        missing = spec.warm_pool - len(pool)
        if missing <= 0:
            return
        started = await asyncio.gather(
            *(self._start_warm(spec, policy) for _ in range(missing)), return_exceptions=True
        )
        for item in started:
            if isinstance(item, BaseException):
                log.warning("warm pool start failed: %s", item)
            else:
                pool.append(item)

    @staticmethod
    async def _start_warm(spec: SandboxTemplateSpec, policy: AddressPolicy) -> Sandbox:
        sandbox = await (await backend(spec.backend)).start(spec, policy)
        try:
            await sandbox.warm_up()
        except BaseException:
            await sandbox.kill()
            raise
        return sandbox

    def warm_soon(self, spec: SandboxTemplateSpec, namespace: str) -> None:
        """Fill a namespace's template's warm pool in the background (after apply, at
        start-up), within the namespace's ceiling."""
        grants = self.admission.grants(namespace)
        if spec.warm_pool > 0 and not grants.limits_problems(spec):
            self._refill(spec, grants.policy)

    async def settle(self) -> None:
        """Wait until the pools' background refills are done."""
        while self._refills:
            await asyncio.gather(*self._refills, return_exceptions=True)

    def _refill(self, spec: SandboxTemplateSpec, policy: AddressPolicy) -> None:
        task = asyncio.create_task(self._refill_soon(spec, policy))
        self._refills.add(task)
        task.add_done_callback(self._refills.discard)

    async def _refill_soon(self, spec: SandboxTemplateSpec, policy: AddressPolicy) -> None:
        # Give the sandbox just handed out its first call before starting another,
        # so a refill does not compete with the request that caused it.
        await asyncio.sleep(REFILL_DELAY_SECONDS)
        await self.warm(spec, policy)

    async def _acquire(self, spec: SandboxTemplateSpec, policy: AddressPolicy) -> Sandbox:
        pool = self.pools.get(self.pool_key(spec, policy))
        while pool:
            sandbox = pool.popleft()
            if sandbox.alive:
                self._refill(spec, policy)
                return sandbox
        if spec.warm_pool:
            self._refill(spec, policy)
        return await (await backend(spec.backend)).start(spec, policy)

    # --- sessions -----------------------------------------------------------------------

    async def create(
        self,
        namespace: str,
        spec: SandboxTemplateSpec | None = None,
        template: str = "default",
        *,
        wait: bool = False,
    ) -> Session:
        """A new session for the namespace, within its ceiling of live sandboxes in this
        process: past it, an error (a client asking over the API), or with ``wait``,
        once another session of the namespace goes (a run's tool: runs executing at once
        are many, sandboxes are few)."""
        spec = spec or await default_template()
        grants = self.admission.grants(namespace)
        problems = grants.limits_problems(spec)
        if problems:
            raise AdmissionDeniedError(
                f"SandboxTemplate {template!r}: {problems[0]}",
                hint="the administrator lowered a ceiling since the template was applied; "
                "apply it again within the ceilings",
                details={"problems": problems},
            )
        most = grants.ceilings.sandboxes
        while (live := self._live(namespace)) >= most:
            if not wait:
                raise SandboxLimitError(
                    f"namespace {namespace!r} already has {live} live sandboxes here, its most",
                    hint="delete sandboxes it no longer needs (DELETE /v1/sandboxes/ID), or "
                    "wait for idle ones to be reaped",
                    details={"live": live, "most": most},
                )
            await self._freed.wait()
        # Counted from here, with no wait between the check and this: creators that
        # start together cannot pass the ceiling.
        self._starting[namespace] = self._starting.get(namespace, 0) + 1
        try:
            sandbox = await self._acquire(spec, grants.policy)
        finally:
            self._starting[namespace] -= 1
            if not self._starting[namespace]:
                del self._starting[namespace]
        session = Session(namespace, template, spec, sandbox)
        self.sessions[sandbox.id] = session
        self._ensure_reaper()
        return session

    def _live(self, namespace: str) -> int:
        live = sum(1 for s in self.sessions.values() if s.namespace == namespace)
        return live + self._starting.get(namespace, 0)

    def forget(self, sandbox_id: str) -> Session | None:
        """Take a session out of the live ones (its sandbox is the caller's to kill),
        making room for creators waiting in its namespace."""
        session = self.sessions.pop(sandbox_id, None)
        self._freed.set()
        self._freed = asyncio.Event()
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
        self.forget(sandbox_id)
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
            session = self.forget(sid)
            if session is not None:
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

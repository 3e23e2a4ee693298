"""One sandbox session per run, started the first time a tool needs it and
removed when the run ends."""

from __future__ import annotations

import asyncio

from hangar.sandbox.base import Sandbox
from hangar.sandbox.manager import SandboxManager, Session, template_spec
from hangar.store.base import ResourceStore

__all__ = ["RunSandbox", "template_spec"]


class RunSandbox:
    def __init__(
        self, manager: SandboxManager, store: ResourceStore, namespace: str, template: str | None
    ) -> None:
        self.manager = manager
        self.store = store
        self.namespace = namespace
        self.template = template
        self.session: Session | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Sandbox:
        async with self._lock:
            if self.session is not None and not self.session.sandbox.alive:
                self.manager.forget(self.session.sandbox.id)  # dead: room for its successor
                self.session = None
            if self.session is None:
                spec = await template_spec(self.store, self.namespace, self.template)
                self.session = await self.manager.create(
                    self.namespace, spec, self.template or "default", wait=True
                )
            return self.session.sandbox

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.manager.forget(session.sandbox.id)
            await session.sandbox.kill()

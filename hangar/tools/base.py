"""The ``Tool`` protocol: a name, a JSON Schema for arguments, and an async call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hangar.models.messages import ToolDefinition
from hangar.sandbox.base import Sandbox


@dataclass(frozen=True)
class ToolContext:
    """What a tool may know about the call it serves."""

    namespace: str
    run_id: str
    agent: str
    allow_hosts: tuple[str, ...] = field(default=())
    sandbox: Callable[[], Awaitable[Sandbox]] | None = None
    """The run's sandbox session, started on first use."""


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

"""The ``SandboxBackend`` protocol and what a sandbox answers.

A backend starts sandboxes from a ``SandboxTemplate``; a ``Sandbox`` is one
isolated, stateful session: Python cells whose variables persist, shell
commands, and a workspace of files. Every outcome has a plain status so callers
(the agent, the API, the tests) never parse error text to know what happened.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.spec.sandbox import SandboxTemplateSpec


class ExecStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    """The code raised, or the command exited non-zero."""
    TIMEOUT = "timeout"
    OOM = "oom"
    OUTPUT_TRUNCATED = "output_truncated"
    DENIED = "denied"
    """Something the sandbox forbids: a path outside the workspace, a full workspace."""
    KILLED = "killed"
    """The sandbox died (killed, or crashed); its session is over."""


@dataclass(frozen=True)
class ExecResult:
    status: ExecStatus
    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    """``repr`` of the cell's last expression, as a notebook shows it."""
    error: str | None = None
    """Exception type and message, or why the sandbox refused."""
    traceback: str | None = None
    exit_code: int | None = None
    files: tuple[str, ...] = ()
    """Workspace files the call created or changed."""
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "value": self.value,
            "error": self.error,
            "traceback": self.traceback,
            "exit_code": self.exit_code,
            "files": list(self.files),
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int


@dataclass(frozen=True)
class Availability:
    """Whether a backend works on this host, and if not, what to do about it."""

    backend: str
    available: bool
    detail: str = ""
    hint: str | None = None
    features: dict[str, bool] = field(default_factory=dict)


OutputCallback = Callable[[str, str], Awaitable[None]]
"""Receives ``(stream, text)`` while a call runs; ``stream`` is "stdout" or "stderr"."""


class Sandbox(Protocol):
    """One running, stateful sandbox session."""

    @property
    def id(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    async def run_python(
        self, code: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        """Run a cell. ``on_output`` gets output as it is printed where the backend can
        stream it; the result always holds all of it."""
        ...

    async def run_shell(
        self, command: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult: ...

    async def write_file(self, path: str, data: bytes) -> FileInfo: ...

    async def read_file(self, path: str) -> bytes: ...

    async def list_files(self) -> list[FileInfo]: ...

    async def warm_up(self) -> None:
        """Pay now the one-time costs a later call would (imports in the guest).
        Warm pools call it; a cold start skips it, so its first call is not delayed."""
        ...

    async def kill(self) -> None: ...


class SandboxBackend(Protocol):
    @property
    def name(self) -> str: ...

    def availability(self) -> Availability: ...

    async def start(
        self, spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY
    ) -> Sandbox:
        """A new sandbox of the template; ``policy`` bounds where its egress proxy (network
        mode ``allowlist``) may connect: the namespace's grants."""
        ...

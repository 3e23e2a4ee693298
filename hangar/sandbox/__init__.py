"""Sandboxes: isolated, stateful, warm places to run untrusted code."""

from hangar.errors import SandboxNotFoundError
from hangar.sandbox.base import (
    Availability,
    ExecResult,
    ExecStatus,
    FileInfo,
    Sandbox,
    SandboxBackend,
)
from hangar.sandbox.manager import SandboxManager, Session
from hangar.sandbox.registry import BACKENDS, all_availability, default_backend

__all__ = [
    "BACKENDS",
    "Availability",
    "ExecResult",
    "ExecStatus",
    "FileInfo",
    "Sandbox",
    "SandboxBackend",
    "SandboxManager",
    "SandboxNotFoundError",
    "Session",
    "all_availability",
    "default_backend",
]

"""``SandboxTemplate``: where untrusted code runs and within which limits."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hangar.spec.base import Resource, SpecModel
from hangar.spec.hosts import HostPatterns


class SandboxLimits(SpecModel):
    """Each limit is bounded by the administrator's ceiling for the namespace."""

    cpu_seconds: float = Field(
        default=10, gt=0, description="CPU time per call, enforced by the host's kernel."
    )
    wall_seconds: float = Field(default=30, gt=0)
    memory_mb: int = Field(default=512, ge=16)
    processes: int = Field(default=64, ge=1)
    workspace_mb: int = Field(default=256, ge=1)
    output_bytes: int = Field(default=1_000_000, ge=1024)
    cpus: float = Field(default=1, gt=0, description="Cores the sandbox may use at once.")


class SandboxNetwork(SpecModel):
    """``none``: no network at all. ``allowlist``: HTTP and HTTPS (through a proxy the
    host runs for the sandbox) to the listed hosts only; nothing else leaves."""

    mode: Literal["none", "allowlist"] = "none"
    allow_hosts: HostPatterns = Field(
        default_factory=list,
        description="Hosts reachable in mode 'allowlist', e.g. 'pypi.org' or '*.example.com'.",
    )

    CEL = (
        {
            "rule": "!has(self.allowHosts) || size(self.allowHosts) == 0"
            " || self.mode == 'allowlist'",
            "message": "allowHosts is set but mode is 'none', so no host would be reachable; "
            "set mode: allowlist",
        },
    )

    @model_validator(mode="after")
    def _hosts_need_allowlist(self) -> SandboxNetwork:
        if self.allow_hosts and self.mode != "allowlist":
            raise ValueError(
                "allowHosts is set but mode is 'none', so no host would be reachable; "
                "set mode: allowlist"
            )
        return self


Backend = Literal["bwrap", "gvisor", "wasm", "monty"]
NETWORKED_BACKENDS = ("bwrap", "gvisor")
"""Backends that can reach allow-listed hosts (through the host's egress proxy)."""


class SandboxTemplateSpec(SpecModel):
    backend: Backend = "bwrap"
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    network: SandboxNetwork = Field(default_factory=SandboxNetwork)
    warm_pool: int = Field(default=0, ge=0, le=1000)
    idle_timeout_seconds: float = Field(default=600, gt=0)
    background: Literal["kill", "keep"] = Field(
        default="kill",
        description="Processes a call leaves running (a server started with '&'): killed "
        "when the call ends, or kept for the session's later calls.",
    )

    CEL = (
        {
            "rule": "!has(self.network) || self.network.mode != 'allowlist'"
            " || self.backend in ['bwrap', 'gvisor']",
            "messageExpression": "'the ' + self.backend + ' backend has no network, so network "
            "mode \\'allowlist\\' cannot work there; use backend bwrap or gvisor'",
        },
    )

    @model_validator(mode="after")
    def _network_needs_processes(self) -> SandboxTemplateSpec:
        if self.network.mode == "allowlist" and self.backend not in NETWORKED_BACKENDS:
            raise ValueError(
                f"the {self.backend} backend has no network, so network mode 'allowlist' "
                f"cannot work there; use backend {' or '.join(NETWORKED_BACKENDS)}"
            )
        return self


class SandboxTemplate(Resource):
    """How sandboxes for code are made: the backend, their limits, their network and a warm
    pool."""

    KIND: ClassVar[str] = "SandboxTemplate"
    PLURAL: ClassVar[str] = "sandboxtemplates"
    kind: Literal["SandboxTemplate"]
    spec: SandboxTemplateSpec

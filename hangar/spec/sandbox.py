"""``SandboxTemplate``: where untrusted code runs and within which limits."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from hangar.spec.base import Resource, SpecModel


class SandboxLimits(SpecModel):
    cpu_seconds: float = Field(default=10, gt=0)
    wall_seconds: float = Field(default=30, gt=0)
    memory_mb: int = Field(default=512, ge=16)
    processes: int = Field(default=64, ge=1)
    workspace_mb: int = Field(default=256, ge=1)
    output_bytes: int = Field(default=1_000_000, ge=1024)


class SandboxNetwork(SpecModel):
    mode: Literal["none", "allowlist"] = "none"
    allow_hosts: list[str] = Field(default_factory=list)


Backend = Literal["bwrap", "gvisor", "wasm", "monty"]


class SandboxTemplateSpec(SpecModel):
    backend: Backend = "bwrap"
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    network: SandboxNetwork = Field(default_factory=SandboxNetwork)
    warm_pool: int = Field(default=0, ge=0, le=1000)
    idle_timeout_seconds: float = Field(default=600, gt=0)


class SandboxTemplate(Resource):
    KIND: ClassVar[str] = "SandboxTemplate"
    PLURAL: ClassVar[str] = "sandboxtemplates"
    kind: Literal["SandboxTemplate"]
    spec: SandboxTemplateSpec

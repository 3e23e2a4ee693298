"""``Agent``: a model, instructions, tools and limits, declared once and run many times."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from hangar.spec.base import Resource, SpecModel, check_name
from hangar.spec.hosts import HostPatterns

BuiltinToolName = Literal[
    "current_time", "http_get", "run_python", "run_shell", "read_file", "write_file"
]
SANDBOX_TOOLS = frozenset({"run_python", "run_shell", "read_file", "write_file"})
"""Built-ins that act in the run's sandbox (one session per run)."""


class ToolRef(SpecModel):
    """One tool an agent may use. Later kinds of tools (MCP, agents) join this union."""

    builtin: BuiltinToolName = Field(description="Name of a built-in tool.")


class Limits(SpecModel):
    max_steps: int = Field(default=10, ge=1, le=1000, description="Model calls per run.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Input plus output tokens over the whole run."
    )
    timeout_seconds: float = Field(default=300, gt=0, le=86_400, description="Wall time per run.")


class Egress(SpecModel):
    allow_hosts: HostPatterns = Field(
        default_factory=list,
        description="Hosts tools may reach over the network, e.g. 'api.example.com' or "
        "'*.example.com'. Empty means none.",
    )


class AgentSpec(SpecModel):
    description: str = ""
    model: str = Field(default="local", description="Name of a Model in the same namespace.")
    instructions: str = Field(default="", description="The system prompt.")
    tools: list[ToolRef] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    egress: Egress = Field(default_factory=Egress)
    sandbox: str | None = Field(
        default=None,
        description="SandboxTemplate for the sandbox tools; default: the host's best backend.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_output_tokens: int | None = Field(default=None, ge=1)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return check_name(value, "model name")

    @field_validator("sandbox")
    @classmethod
    def _sandbox(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "sandbox template name")

    def uses_sandbox(self) -> bool:
        return any(ref.builtin in SANDBOX_TOOLS for ref in self.tools)


class Agent(Resource):
    KIND: ClassVar[str] = "Agent"
    PLURAL: ClassVar[str] = "agents"
    kind: Literal["Agent"]
    spec: AgentSpec

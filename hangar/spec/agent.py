"""``Agent``: a model, instructions, tools and limits, declared once and run many times."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hangar.spec.base import Resource, SpecModel, check_name
from hangar.spec.hosts import HostPatterns

BuiltinToolName = Literal[
    "current_time", "http_get", "run_python", "run_shell", "read_file", "write_file"
]
SANDBOX_TOOLS = frozenset({"run_python", "run_shell", "read_file", "write_file"})
"""Built-ins that act in the run's sandbox (one session per run)."""


class ToolRef(SpecModel):
    """One source of tools for an agent: a built-in tool, the tools of an MCP server
    (optionally narrowed by glob patterns), or another agent called as a tool."""

    builtin: BuiltinToolName | None = Field(default=None, description="A built-in tool.")
    mcp: str | None = Field(
        default=None,
        description="An MCPServer in the same namespace; its tools are named SERVER__TOOL.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="With 'mcp': glob patterns of the server's tool names to take; empty: all.",
    )
    agent: str | None = Field(
        default=None,
        description="Another Agent in the namespace, called as a tool named after it; its "
        "tokens and cost count toward this run.",
    )

    @field_validator("mcp", "agent")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "name")

    CEL = (
        {
            "rule": "[has(self.builtin), has(self.mcp), has(self.agent)].filter(x, x).size() == 1",
            "message": "a tool entry needs exactly one of 'builtin', 'mcp' or 'agent'",
        },
        {
            "rule": "!has(self.include) || size(self.include) == 0 || has(self.mcp)",
            "message": "'include' narrows an 'mcp' entry; a builtin is one tool already",
        },
    )

    @model_validator(mode="after")
    def _one_source(self) -> ToolRef:
        if sum(x is not None for x in (self.builtin, self.mcp, self.agent)) != 1:
            raise ValueError("a tool entry needs exactly one of 'builtin', 'mcp' or 'agent'")
        if self.include and self.mcp is None:
            raise ValueError("'include' narrows an 'mcp' entry; a builtin is one tool already")
        return self


PolicyAction = Literal["allow", "deny", "require_approval"]


class PolicyRule(SpecModel):
    tool: str = Field(description="Glob pattern of tool names, e.g. 'github__delete_*'.")
    action: PolicyAction


class ToolPolicy(SpecModel):
    """Which of the agent's tools may run. The first rule whose pattern matches a tool
    decides; a tool no rule matches gets ``default``."""

    rules: list[PolicyRule] = Field(default_factory=list)
    default: PolicyAction = "allow"


class Limits(SpecModel):
    max_steps: int = Field(default=10, ge=1, le=1000, description="Model calls per run.")
    max_tokens: int | None = Field(
        default=None, ge=1, description="Input plus output tokens over the whole run."
    )
    max_cost: float | None = Field(
        default=None, gt=0, description="US dollars over the whole run (agents it calls included)."
    )
    timeout_seconds: float = Field(default=300, gt=0, le=86_400, description="Wall time per run.")
    max_depth: int = Field(
        default=3,
        ge=0,
        le=16,
        description="How deep agents called as tools may nest below a run of this agent.",
    )


class Egress(SpecModel):
    allow_hosts: HostPatterns = Field(
        default_factory=list,
        description="Hosts tools may reach over the network, e.g. 'api.example.com' or "
        "'*.example.com'. Empty means none.",
    )


class KnowledgeRef(SpecModel):
    """A KnowledgeBase the agent draws on: searched by the model through the
    ``search_knowledge`` tool, or (``auto``) searched with each run's question and put
    into its context before the first model call. Either way the chunks used are cited
    in the run's result."""

    name: str = Field(description="A KnowledgeBase in the same namespace.")
    retrieval: Literal["tool", "auto"] = "tool"
    top_k: int = Field(default=4, ge=1, le=50, description="Chunks per search.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value, "knowledge base name")


class UserMemory(SpecModel):
    """Long-term memory of each end user (a run's ``user``): after a run, facts about
    the user are extracted, embedded and kept (a near-duplicate updates the one it
    repeats); at the start of later runs the ones nearest the question are recalled."""

    model: str | None = Field(
        default=None, description="The Model that extracts facts; default: the agent's."
    )
    recall: int = Field(default=5, ge=0, le=50, description="Facts recalled per run.")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "model name")


class SessionMemory(SpecModel):
    """A session's history within a token budget: when its turns outgrow it, the older
    ones are summarised (once, then kept) and the newest kept word for word."""

    max_tokens: int = Field(
        default=4000, ge=64, le=1_000_000, description="Tokens of history a turn sees."
    )
    model: str | None = Field(
        default=None, description="The Model that summarises; default: the agent's."
    )

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "model name")


class MemorySpec(SpecModel):
    user: UserMemory | None = Field(default=None, description="Remember each end user.")
    session: SessionMemory | None = Field(
        default=None, description="Keep session history within a budget."
    )


class AgentSpec(SpecModel):
    description: str = ""
    model: str = Field(default="local", description="Name of a Model in the same namespace.")
    instructions: str = Field(default="", description="The system prompt.")
    tools: list[ToolRef] = Field(
        default_factory=list,
        max_length=128,
        description="Where the agent's tools come from (at most 128 entries: a bound a "
        "cluster needs to price the CEL rule on each entry).",
    )
    knowledge: list[KnowledgeRef] = Field(default_factory=list)
    memory: MemorySpec = Field(default_factory=MemorySpec)
    tool_policy: ToolPolicy = Field(default_factory=ToolPolicy)
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

    def mcp_servers(self) -> list[str]:
        return [ref.mcp for ref in self.tools if ref.mcp is not None]


class Agent(Resource):
    """An agent: a model, its instructions, its tools and knowledge, and the limits and
    policy its runs keep to."""

    KIND: ClassVar[str] = "Agent"
    PLURAL: ClassVar[str] = "agents"
    kind: Literal["Agent"]
    spec: AgentSpec

"""``MCPServer``: an MCP server registered once and shared by the agents allowed to.

Credentials are references to ``Secret`` keys: Hangar opens them only to start the
server or to send a request to it, so no agent, run, log or response holds them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hangar.spec.base import Resource, SpecModel
from hangar.spec.secret import SecretKeyRef, ValueOrSecret


class StdioTransport(SpecModel):
    command: str = Field(description="Executable to start, found on the server's PATH.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, ValueOrSecret] = Field(
        default_factory=dict,
        description="Environment of the server process; nothing else of Hangar's leaks in "
        "but PATH, HOME and the locale.",
    )
    cwd: str | None = None


class OAuthClientCredentials(SpecModel):
    """OAuth 2.1 client-credentials grant, for servers that require a bearer token."""

    client_id: str
    client_secret: SecretKeyRef
    issuer: str = Field(description="The authorization server's issuer URL.")
    scope: str | None = None


class HttpTransport(SpecModel):
    url: str = Field(description="The streamable-HTTP endpoint, e.g. https://host/mcp.")
    headers: dict[str, ValueOrSecret] = Field(default_factory=dict)
    oauth: OAuthClientCredentials | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value


class ToolFilter(SpecModel):
    include: list[str] = Field(default_factory=list, description="Glob patterns; empty: all.")
    exclude: list[str] = Field(default_factory=list)

    def admits(self, name: str) -> bool:
        from fnmatch import fnmatchcase

        if self.include and not any(fnmatchcase(name, p) for p in self.include):
            return False
        return not any(fnmatchcase(name, p) for p in self.exclude)


class MCPServerSpec(SpecModel):
    stdio: StdioTransport | None = None
    http: HttpTransport | None = None
    tools: ToolFilter = Field(default_factory=ToolFilter)
    timeout_seconds: float = Field(default=30, gt=0, le=3600, description="Per tool call.")
    idempotent_tools: list[str] = Field(
        default_factory=list,
        description="Glob patterns of tools safe to repeat (read-only ones): a resumed run "
        "re-runs only these. Tools annotated idempotentHint or readOnlyHint count too.",
    )

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSpec:
        if (self.stdio is None) == (self.http is None):
            raise ValueError("set exactly one transport: 'stdio' or 'http'")
        return self


class MCPServer(Resource):
    KIND: ClassVar[str] = "MCPServer"
    PLURAL: ClassVar[str] = "mcpservers"
    kind: Literal["MCPServer"]
    spec: MCPServerSpec

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.spec.stdio is not None else "http"

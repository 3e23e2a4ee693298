"""``MCPServer``: an MCP server registered once and shared by the agents allowed to.

Three ways to reach one: ``http`` (a streamable-HTTP URL, connected through the
egress checks), ``stdio`` (a command Hangar starts *inside a sandbox* of the
namespace, with the template's limits and network policy), or ``catalog`` (a server
the administrator runs on the host, referenced by name: the entry fixes the command).

Credentials are references to ``Secret`` keys: Hangar opens them only to start the
server or to send a request to it, so no agent, run, log or response holds them.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hangar.errors import shown
from hangar.spec.base import Resource, SpecModel, check_name
from hangar.spec.secret import SecretKeyRef, ValueOrSecret


class StdioTransport(SpecModel):
    """A server started over stdio inside a sandbox: it sees the sandbox's read-only
    system, its own workspace and the network its template allows, nothing of the host."""

    command: str = Field(description="Executable inside the sandbox, e.g. 'python3' or 'npx'.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, ValueOrSecret] = Field(
        default_factory=dict,
        description="Environment of the server process; nothing of Hangar's leaks in.",
    )
    cwd: str | None = Field(default=None, description="Inside the sandbox; default its workspace.")
    sandbox: str | None = Field(
        default=None,
        description="A SandboxTemplate (backend bwrap or gvisor) for its limits and network; "
        "default: bwrap with no network.",
    )

    @field_validator("sandbox")
    @classmethod
    def _sandbox(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "sandbox template name")


class CatalogRef(SpecModel):
    """A host MCP server from the administrator's catalog (see the admission file)."""

    name: str = Field(description="The catalog entry.")
    env: dict[str, ValueOrSecret] = Field(
        default_factory=dict,
        description="Variables the entry lets a namespace set, e.g. a token from a Secret.",
    )


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
            raise ValueError(f"url must start with http:// or https://, got {shown(value)}")
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
    catalog: CatalogRef | None = None
    tools: ToolFilter = Field(default_factory=ToolFilter)
    timeout_seconds: float = Field(default=30, gt=0, le=3600, description="Per tool call.")
    idempotent_tools: list[str] = Field(
        default_factory=list,
        description="Glob patterns of tools safe to repeat (read-only ones): a resumed run "
        "re-runs only these. Tools annotated idempotentHint or readOnlyHint count too.",
    )

    CEL = (
        {
            "rule": "[has(self.stdio), has(self.http), has(self.catalog)].filter(x, x).size() == 1",
            "message": "set exactly one transport: 'stdio', 'http' or 'catalog'",
        },
    )

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSpec:
        if sum(x is not None for x in (self.stdio, self.http, self.catalog)) != 1:
            raise ValueError("set exactly one transport: 'stdio', 'http' or 'catalog'")
        return self


class MCPServer(Resource):
    """An MCP server whose tools agents use: started in a sandbox over stdio, reached over
    HTTP, or taken from the catalog."""

    KIND: ClassVar[str] = "MCPServer"
    PLURAL: ClassVar[str] = "mcpservers"
    kind: Literal["MCPServer"]
    spec: MCPServerSpec

    @property
    def transport(self) -> Literal["stdio", "http", "catalog"]:
        if self.spec.catalog is not None:
            return "catalog"
        return "stdio" if self.spec.stdio is not None else "http"

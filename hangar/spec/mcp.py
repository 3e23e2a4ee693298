"""``MCPServer``: an MCP server registered once and shared by the agents allowed to."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hangar.spec.base import Resource, SpecModel


class StdioTransport(SpecModel):
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)


class HttpTransport(SpecModel):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)


class ToolFilter(SpecModel):
    include: list[str] = Field(default_factory=list, description="Glob patterns; empty: all.")
    exclude: list[str] = Field(default_factory=list)


class MCPServerSpec(SpecModel):
    stdio: StdioTransport | None = None
    http: HttpTransport | None = None
    tools: ToolFilter = Field(default_factory=ToolFilter)
    timeout_seconds: float = Field(default=30, gt=0)

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

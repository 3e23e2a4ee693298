"""Hangar as an MCP server: ``/v1/mcp`` speaks streamable HTTP (the official SDK's
server) and offers the caller's namespace as tools: every MCP server's tools, named
``SERVER__TOOL`` as agents see them, and every agent, named as itself, which runs
the agent on the given input. Callers authenticate with a Hangar API key
(``Authorization: Bearer …``, checked by the gateway's guard) that may start runs;
the key's namespace is the one served, and its ToolPolicies decide every call (a
tool that needs approval is refused here: there is no one to ask).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from starlette.types import Receive, Scope, Send

from hangar.errors import AuthenticationError, HangarError, ToolNotAllowedError
from hangar.gateway.auth import refuse
from hangar.gateway.guard import STATE_KEY
from hangar.roles import Permission
from hangar.runtime.host import Runtime
from hangar.runtime.loop import arguments_digest
from hangar.runtime.resolve import namespace_policies
from hangar.runtime.service import RunInput
from hangar.runtime.subagents import INPUT_SCHEMA, agent_input, agent_tool_description
from hangar.spec.agent import Agent, AgentSpec
from hangar.spec.mcp import MCPServer
from hangar.store.records import ApiKey, StoredResource, ToolAudit
from hangar.tools.base import ToolContext
from hangar.tools.mcp import MCPTool
from hangar.tools.mcp.hub import SEPARATOR
from hangar.tools.policy import decide_all, refusal

PATH = "/v1/mcp"
_namespace: contextvars.ContextVar[str] = contextvars.ContextVar("hangar_mcp_namespace")


class MCPEndpoint:
    """The ASGI app behind ``/v1/mcp``: authenticates, then hands over to the SDK."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: Server[Any] = Server(
            "hangar",
            version="0.1.0",
            instructions="Tools of this Hangar namespace: MCP servers' tools as SERVER__TOOL, "
            "and agents by name (give them an 'input').",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            get_tool_input_schema=self._schema,
        )
        self.sessions = StreamableHTTPSessionManager(app=self.server, stateless=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self.sessions.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = scope.get("state", {}).get(STATE_KEY)
        error: HangarError | None = None
        if not isinstance(key, ApiKey):
            error = AuthenticationError(
                "a valid Hangar API key is required",
                hint="send 'Authorization: Bearer <key>'; create one with `hangar keys create`",
            )
        elif not key.may(Permission.RUN):
            error = refuse(key, Permission.RUN)
        if error is not None or not isinstance(key, ApiKey):
            assert error is not None
            body = json.dumps(error.to_dict()).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": error.status,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        token = _namespace.set(key.namespace)
        try:
            await self.sessions.handle_request(scope, receive, send)
        finally:
            _namespace.reset(token)

    def _schema(self, name: str) -> dict[str, Any] | None:
        """A tool's input schema for the SDK's pre-call checks, from memory: without it
        the SDK lists every tool of the namespace before each call."""
        namespace = _namespace.get(None)
        if namespace is None:
            return None
        if SEPARATOR not in name:
            return INPUT_SCHEMA
        return self.runtime.hub.cached_schema(namespace, name)

    # --- the namespace as tools ------------------------------------------------------

    @staticmethod
    def _key(ctx: Any) -> ApiKey:
        key = ctx.request.scope["state"][STATE_KEY]
        assert isinstance(key, ApiKey)
        return key

    async def _catalogue(self, namespace: str) -> tuple[dict[str, MCPTool], dict[str, AgentSpec]]:
        store, hub = self.runtime.resources, self.runtime.hub
        servers = await store.list_resources(namespace, MCPServer.KIND)

        async def tools_of(server: StoredResource) -> list[MCPTool]:
            try:
                return await hub.tools(namespace, server, [])
            except HangarError:
                return []  # a server that is down offers nothing; its status says why

        found = await asyncio.gather(*(tools_of(s) for s in servers))
        tools = {t.definition.name: t for server_tools in found for t in server_tools}
        agents = {
            a.name: AgentSpec.model_validate(a.spec)
            for a in await store.list_resources(namespace, Agent.KIND)
        }
        return tools, agents

    async def _list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        """What the namespace offers, less what its ToolPolicies deny."""
        namespace = self._key(ctx).namespace
        tools, agents = await self._catalogue(namespace)
        policies = await namespace_policies(self.runtime.resources, namespace)
        listed = [
            Tool(
                name=name,
                description=tool.definition.description,
                input_schema=tool.definition.parameters,
            )
            for name, tool in tools.items()
        ]
        listed += [
            Tool(
                name=name,
                description=agent_tool_description(name, spec.description),
                input_schema=INPUT_SCHEMA,
            )
            for name, spec in agents.items()
        ]
        offered = [t for t in listed if decide_all(policies, t.name).action != "deny"]
        return ListToolsResult(tools=offered)

    async def _call_tool(self, ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        key = self._key(ctx)
        name, arguments = params.name, dict(params.arguments or {})
        started = time.perf_counter()
        decision = decide_all(await namespace_policies(self.runtime.resources, key.namespace), name)
        try:
            if decision.action == "deny":
                raise ToolNotAllowedError(refusal(f"mcp:{key.name}", name, decision))
            if decision.action == "require_approval":
                raise ToolNotAllowedError(
                    f"tool {name!r} needs a person's approval ({decision.rule}), which calls "
                    "through /v1/mcp cannot wait for; call it through an agent instead"
                )
            text = await self._dispatch(key, name, arguments)
            outcome, failed = "ok", False
        except ToolNotAllowedError as exc:
            text, outcome, failed = exc.message, "denied", True
        except HangarError as exc:
            text, outcome, failed = exc.message, "error", True
        await self.runtime.audit.record_tool_call(
            ToolAudit(
                namespace=key.namespace,
                agent=_context(key).agent,
                run_id="-",
                tool=name,
                arguments_sha256=arguments_digest(json.dumps(arguments)),
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                created_at=datetime.now(UTC),
            )
        )
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=failed)

    async def _dispatch(self, key: ApiKey, name: str, arguments: dict[str, Any]) -> str:
        namespace = key.namespace
        if SEPARATOR in name:
            server = name.split(SEPARATOR, 1)[0]
            for tool in await self.runtime.hub.tools(namespace, server, []):
                if tool.definition.name == name:
                    return await tool.call(arguments, _context(key))
        else:
            agent = await self.runtime.resources.get_resource(namespace, Agent.KIND, name)
            if agent is not None:
                return await self._run_agent(namespace, name, arguments)
        raise HangarError(
            f"no tool named {name!r} in namespace {namespace!r}",
            hint="list them with tools/list",
        )

    async def _run_agent(self, namespace: str, name: str, arguments: dict[str, Any]) -> str:
        text = agent_input(name, arguments)
        runs = self.runtime.runs
        run = await runs.start(namespace, name, RunInput([{"role": "user", "content": text}]))
        run = await runs.wait(namespace, run.id)
        if run.status.value != "succeeded":
            error = (run.error or {}).get("message", run.reason or run.status.value)
            raise HangarError(f"agent {name!r} run {run.id} {run.status.value}: {error}")
        return str((run.output or {}).get("text", ""))


def _context(key: ApiKey) -> ToolContext:
    """Who calls through the endpoint: the API key, in place of an agent and a run."""
    return ToolContext(namespace=key.namespace, run_id="-", agent=f"mcp:{key.name}")

"""One live connection to one MCP server, through the official ``mcp`` SDK.

How the server is reached comes ready from the hub (``Launch``): a command line
(a catalog server on the host, or a namespace's server inside its sandbox), or a
URL reached through the egress checks. What a host server prints on stderr stays in
the server's log, never in an answer to a tenant; a sandboxed server's own output
is the tenant's, and its tail is shown to help them.

The SDK's ``Client`` is an anyio context: it must be entered and left by the same
task. So each connection lives in its own supervisor task, which connects, lists
the tools, follows change notifications and waits to be told to stop; callers
use the client it holds. When the server dies (a stdio process crashes, an HTTP
session is lost) the next call starts a new supervisor: one restart per failure
however many calls saw it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from types import TracebackType
from typing import Any, Literal, TextIO

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client._transport import TransportStreams
from mcp.client.auth import TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from mcp.shared.exceptions import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    Implementation,
    TextContent,
    Tool,
    ToolListChangedNotification,
)

from hangar.egress import PUBLIC_ONLY, AddressPolicy, first_denial, http_client
from hangar.errors import HangarError, ToolError
from hangar.spec.mcp import MCPServerSpec

log = logging.getLogger("hangar.tools.mcp")

STDERR_TAIL = 2000
CONNECT_SECONDS = 60.0
State = Literal["idle", "starting", "ready", "failed", "closed"]


@dataclass(frozen=True)
class Launch:
    """How to reach one server, its secrets opened: a command line to start (stdio), or
    the headers and address policy of its URL (http); the values that came from
    Secrets, so results echoing them are scrubbed."""

    command: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    oauth_client_secret: str | None = None
    policy: AddressPolicy = PUBLIC_ONLY
    secrets: tuple[str, ...] = ()
    """The values that came from Secrets (literal ones are no secret)."""
    on_host: bool = False
    """A catalog server, run on the host: its stderr is the administrator's to read."""
    close: Callable[[], Awaitable[None]] | None = None
    """What to clear once the connection has ended (a sandbox's leftovers)."""


@dataclass(frozen=True)
class UpstreamTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    idempotent: bool


def printable(text: str) -> str:
    """Text a program printed, with its control characters (terminal escapes) dropped."""
    return "".join(c for c in text if c.isprintable() or c in "\n\t")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """Replace each secret value in ``text``: a server may echo what it was given."""
    for value in secrets:
        if len(value) >= 4:
            text = text.replace(value, "[secret]")
    return text


def result_text(result: CallToolResult) -> str:
    """A tool result as the text a chat model reads."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, TextContent):
            parts.append(block.text)
        elif isinstance(block, ImageContent):
            parts.append(f"[image {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, EmbeddedResource):
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if isinstance(text, str) else f"[resource {resource.uri}]")
        else:
            parts.append(f"[{block.type}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


class Upstream:
    """An MCP server of one namespace at one generation of its spec."""

    def __init__(
        self,
        namespace: str,
        name: str,
        generation: int,
        spec: MCPServerSpec,
        launch: Callable[[], Awaitable[Launch]],
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.generation = generation
        self.spec = spec
        self._launch = launch
        self._secrets: tuple[str, ...] = ()
        self.state: State = "idle"
        self.last_error: str | None = None
        self.restarts = 0
        self.tools: dict[str, UpstreamTool] = {}
        self._client: Client | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        self._epoch = 0
        self._refreshes: set[asyncio.Task[None]] = set()
        """Tool-list refreshes under way (held here so they are not collected mid-run)."""

    # --- lifecycle -------------------------------------------------------------------

    async def ensure(self) -> int:
        """Connect if not connected; return the connection's epoch. Raises ``ToolError``
        naming the server and what it printed when it cannot start."""
        async with self._lock:
            if self._ready is None or self.state in ("failed", "closed", "idle"):
                if self.state == "closed":
                    raise ToolError(f"MCP server {self.name!r} was removed or replaced")
                self._start()
            ready = self._ready
            epoch = self._epoch
        assert ready is not None
        await asyncio.shield(ready)
        return epoch

    def _start(self) -> None:
        self._epoch += 1
        self.state = "starting"
        self._stop = asyncio.Event()
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(
            self._supervise(self._stop, self._ready), name=f"mcp-{self.namespace}-{self.name}"
        )

    async def restart(self, epoch: int) -> None:
        """Replace the connection of ``epoch`` with a new one, once: callers that saw the
        same failure share one restart."""
        async with self._lock:
            if epoch != self._epoch or self.state == "closed":
                return
            await self._halt()
            self.restarts += 1
            self._start()

    async def close(self) -> None:
        async with self._lock:
            await self._halt()
            self.state = "closed"

    async def _halt(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(10):
                    await asyncio.shield(self._task)
            if not self._task.done():
                self._task.cancel()
        self._task = None

    async def _supervise(self, stop: asyncio.Event, ready: asyncio.Future[None]) -> None:
        errlog = tempfile.TemporaryFile("w+")  # noqa: SIM115 - lives as long as the server
        launched: list[Launch] = []
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                client = await self._enter(errlog, stack := contextlib.AsyncExitStack(), launched)
            async with stack:
                self._client = client
                # Subscribe before listing, so no change falls between the two.
                listening = asyncio.Event()
                listener = asyncio.create_task(self._listen(client, listening))
                try:
                    async with asyncio.timeout(CONNECT_SECONDS):
                        await listening.wait()
                        await self._load_tools(client)
                    self.state, self.last_error = "ready", None
                    ready.set_result(None)
                    await stop.wait()
                finally:
                    listener.cancel()
                    await asyncio.gather(listener, return_exceptions=True)
                    self._client = None
        except BaseException as exc:
            message = self._failure(exc, errlog, launched[0] if launched else None)
            self.state, self.last_error = "failed", message
            if not ready.done():
                ready.set_exception(ToolError(message, details={"mcp_server": self.name}))
                ready.exception()  # retrieved: no "never retrieved" warning when no one waits
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            errlog.close()
            for launch in launched:
                if launch.close is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(launch.close())

    async def _enter(
        self, errlog: TextIO, stack: contextlib.AsyncExitStack, launched: list[Launch]
    ) -> Client:
        launch = await self._launch()
        launched.append(launch)
        self._secrets = launch.secrets
        client = Client(
            self._transport(launch, errlog),
            read_timeout_seconds=self.spec.timeout_seconds,
            message_handler=self._on_message,
            client_info=Implementation(name="hangar", version="0.1.0"),
            cache=None,  # Hangar keeps the tool list itself and refreshes it on change
        )
        return await stack.enter_async_context(client)

    def _transport(self, launch: Launch, errlog: TextIO) -> _Connect:
        if launch.command is not None:
            from mcp.client.stdio import stdio_client

            command, *args = launch.command
            return _Connect(
                stdio_client(
                    StdioServerParameters(
                        command=command, args=args, env=launch.env, cwd=launch.cwd
                    ),
                    errlog=errlog,
                )
            )
        http = self.spec.http
        assert http is not None
        auth = None
        if http.oauth is not None and launch.oauth_client_secret is not None:
            from mcp.client.auth.extensions.client_credentials import (
                ClientCredentialsOAuthProvider,
            )

            auth = ClientCredentialsOAuthProvider(
                server_url=http.url,
                storage=_MemoryTokens(),
                client_id=http.oauth.client_id,
                client_secret=launch.oauth_client_secret,
                scope=http.oauth.scope,
                issuer=http.oauth.issuer,
            )
        client = http_client(
            launch.policy,
            headers=launch.headers,
            auth=auth,
            timeout=httpx2.Timeout(30, read=max(300.0, self.spec.timeout_seconds)),
        )
        return _Connect(streamable_http_client(http.url, http_client=client), closing=client)

    def _failure(self, exc: BaseException, errlog: TextIO, launch: Launch | None) -> str:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        denied = first_denial(exc)
        if denied is not None:
            return f"MCP server {self.name!r}: {denied.message}"
        if isinstance(exc, HangarError):
            return exc.message  # already says what is wrong, e.g. a missing Secret
        if isinstance(exc, TimeoutError):
            what = f"did not answer within {CONNECT_SECONDS:.0f} s"
        elif isinstance(exc, FileNotFoundError):
            what = "cannot be started: its command was not found"
        elif isinstance(exc, httpx2.HTTPError):
            what = f"cannot be reached: {type(exc).__name__}: {exc}"
        else:
            what = f"failed: {type(exc).__name__}: {exc}"
        message = f"MCP server {self.name!r} {what}"
        errlog.flush()
        errlog.seek(0)
        tail = errlog.read()[-STDERR_TAIL:].strip()
        if tail and launch is not None and launch.on_host:
            # A host program's output may say anything about the host: the log only.
            log.warning("MCP server %s/%s printed: %s", self.namespace, self.name, tail)
            message += "; what it printed is in the server's log"
        elif tail:
            message += f"; it printed: {printable(tail)}"
        return redact(message, self._secrets)

    # --- tools -----------------------------------------------------------------------

    async def _load_tools(self, client: Client) -> None:
        tools: dict[str, UpstreamTool] = {}
        cursor: str | None = None
        while True:
            page = await client.list_tools(cursor=cursor)
            for tool in page.tools:
                if self.spec.tools.admits(tool.name):
                    tools[tool.name] = self._tool(tool)
            cursor = page.next_cursor
            if cursor is None:
                break
        self.tools = tools

    def _tool(self, tool: Tool) -> UpstreamTool:
        hints = tool.annotations
        idempotent = any(fnmatchcase(tool.name, p) for p in self.spec.idempotent_tools) or bool(
            hints is not None and (hints.read_only_hint or hints.idempotent_hint)
        )
        return UpstreamTool(
            name=tool.name,
            description=tool.description or tool.title or "",
            input_schema=dict(tool.input_schema),
            idempotent=idempotent,
        )

    async def _listen(self, client: Client, listening: asyncio.Event) -> None:
        """Follow tool-list changes on 2026-07-28 sessions (older ones notify unasked)."""
        from mcp.client.subscriptions import ListenNotSupportedError

        try:
            async with client.listen(tools_list_changed=True) as subscription:
                listening.set()
                async for _ in subscription:
                    await self._load_tools(client)
        except ListenNotSupportedError:
            return
        except Exception as exc:  # a lost subscription: the next call finds out why
            log.debug("MCP server %s: change subscription ended: %s", self.name, exc)
        finally:
            listening.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification) or (
            getattr(message, "root", None) is not None
            and isinstance(message.root, ToolListChangedNotification)
        ):
            client = self._client
            if client is not None:
                task = asyncio.get_running_loop().create_task(self._load_tools(client))
                self._refreshes.add(task)
                task.add_done_callback(self._refreshes.discard)

    # --- calls -----------------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Call one tool; its text result, with any secret of this server scrubbed.

        A connection found closed is restarted and an idempotent call sent once more;
        a call that was not idempotent is not repeated blindly: the error says so."""
        upstream_tool = self.tools.get(tool)
        idempotent = upstream_tool is not None and upstream_tool.idempotent
        for attempt in (1, 2):
            epoch = await self.ensure()
            client = self._client
            sent = time.monotonic()
            try:
                if client is None:
                    raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
                result = await client.call_tool(
                    tool, arguments, read_timeout_seconds=self.spec.timeout_seconds
                )
            except MCPError as exc:
                if exc.code == REQUEST_TIMEOUT:
                    raise ToolError(
                        f"MCP server {self.name!r}: {tool} did not answer within "
                        f"{self.spec.timeout_seconds:g} s",
                        hint="raise the MCPServer's spec.timeoutSeconds if it needs longer",
                    ) from None
                if exc.code != CONNECTION_CLOSED:
                    raise ToolError(
                        redact(f"MCP server {self.name!r}: {tool}: {exc}", self._secrets)
                    ) from None
                await self.restart(epoch)
                if attempt == 1 and idempotent:
                    continue
                raise ToolError(
                    f"MCP server {self.name!r} closed the connection during {tool} (it crashed "
                    f"or exited after {time.monotonic() - sent:.1f} s); Hangar restarted it. "
                    + (
                        "The call failed again after one retry."
                        if attempt == 2
                        else f"The call was not repeated: {tool} is not marked idempotent."
                    ),
                    hint="list it in the MCPServer's spec.idempotentTools if repeating is safe",
                    details={"mcp_server": self.name, "tool": tool},
                ) from None
            text = redact(result_text(result), self._secrets)
            if result.is_error:
                raise ToolError(text or f"{tool} failed")
            return text
        raise AssertionError("unreachable")

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "tools": len(self.tools),
            "restarts": self.restarts,
            "error": self.last_error,
            "generation": self.generation,
        }


class _Connect:
    """An SDK transport, plus the HTTP client to close after it."""

    def __init__(
        self,
        transport: AbstractAsyncContextManager[TransportStreams],
        closing: httpx2.AsyncClient | None = None,
    ) -> None:
        self.transport = transport
        self.closing = closing

    async def __aenter__(self) -> TransportStreams:
        return await self.transport.__aenter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        try:
            return await self.transport.__aexit__(kind, exc, traceback)
        finally:
            if self.closing is not None:
                await self.closing.aclose()


class _MemoryTokens(TokenStorage):
    """OAuth tokens for one connection, held in memory: a restart asks for new ones."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info

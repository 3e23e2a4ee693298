"""A small real MCP server (the official SDK's ``MCPServer``) for the hub's tests: it
echoes, crashes on request, shows the token it was started with, and learns new
tools at run time (announcing the change).

    python -m tests.tools.mcp_servers.workbench [stdio | http PORT | fail]
    python -m tests.tools.mcp_servers.workbench oauth PORT ISSUER TOKEN

``oauth`` serves over HTTP as an OAuth resource server: it advertises ``ISSUER`` as
its authorization server and accepts only the bearer ``TOKEN``.
"""

from __future__ import annotations

import os
import sys

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ToolAnnotations


class OneToken:
    """Accepts exactly one bearer token: the one the test's authorization server issues."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def verify_token(self, token: str) -> AccessToken | None:
        if token != self.token:
            return None
        return AccessToken(token=token, client_id="hangar", scopes=["tools"])


if len(sys.argv) > 4 and sys.argv[1] == "oauth":
    port, issuer, token = sys.argv[2], sys.argv[3], sys.argv[4]
    server = MCPServer(
        "workbench",
        token_verifier=OneToken(token),
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=f"http://127.0.0.1:{port}/mcp",
            required_scopes=["tools"],
        ),
    )
else:
    server = MCPServer("workbench")
READ_ONLY = ToolAnnotations(read_only_hint=True)


@server.tool(annotations=READ_ONLY)
def echo(text: str) -> str:
    """Return the text."""
    return f"echo: {text}"


@server.tool(annotations=READ_ONLY)
def pid() -> str:
    """The server's process id (a restarted server has a new one)."""
    return str(os.getpid())


@server.tool()
def crash() -> str:
    """Exit the server process at once, mid-call."""
    os._exit(3)


@server.tool(annotations=READ_ONLY)
def show_token() -> str:
    """Echo the token from the environment, as a careless server might."""
    return f"my token is {os.environ.get('WORKBENCH_TOKEN', '(none)')}"


@server.tool(annotations=READ_ONLY)
def show_header(name: str, ctx: Context) -> str:
    """Echo one HTTP request header (over streamable HTTP), as a careless server might."""
    headers = ctx.headers or {}
    return f"{name}: {headers.get(name.lower(), '(none)')}"


@server.tool()
async def learn(name: str, ctx: Context) -> str:
    """Add a tool called ``name`` and tell clients the tool list changed."""

    def learned() -> str:
        return f"{name} works"

    server.add_tool(learned, name=name, description=f"Learned at run time: {name}")
    await ctx.notify_tools_changed()
    return f"learned {name}"


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if mode == "fail":
        print("workbench: cannot start: WORKBENCH_CONFIG is not set", file=sys.stderr)
        sys.exit(2)
    if mode in ("http", "oauth"):
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()

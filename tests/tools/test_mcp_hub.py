"""The MCP hub against real MCP servers: our SDK-built workbench (Python, stdio and
streamable HTTP), the reference ``server-everything`` from npm (stdio and streamable
HTTP) and ``mcp-server-time`` from PyPI, run on the host from the administrator's
catalog; and a namespace's own stdio servers, run in sandboxes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from hangar.admission import Admission
from hangar.errors import ResourceNotFoundError, ToolError
from hangar.spec import Secret, parse_document
from hangar.store.secrets import SecretBox, SecretResolver
from hangar.store.sql import SqlStore
from hangar.tools.base import ToolContext
from hangar.tools.mcp import MCPHub, qualified_name
from tests.helpers import CATALOG, EVERYTHING, doc, eventually, free_port, trusted

ROOT = Path(__file__).resolve().parents[2]
CTX = ToolContext("default", "run_test", "tester")
MINIMAL = (ROOT / "tests/tools/mcp_servers/minimal.py").read_text()
TEST_CATALOG = [
    *CATALOG,
    {
        "name": "workbench-fail",
        "command": sys.executable,
        "args": ["-m", "tests.tools.mcp_servers.workbench", "fail"],
        "cwd": str(ROOT),
    },
    {"name": "missing", "command": "no-such-mcp-server"},
    {"name": "everything-stdio", "command": str(EVERYTHING), "args": ["stdio"],
     "tenantEnv": ["EV_SECRET"]},
    {"name": "workbench-x", "command": sys.executable,
     "args": ["-m", "tests.tools.mcp_servers.workbench"], "cwd": str(ROOT), "tenantEnv": ["X"]},
]  # fmt: skip


def workbench(**env: Any) -> dict[str, Any]:
    """The workbench from the catalog (the administrator fixed how it runs)."""
    return {"catalog": {"name": "workbench", "env": env}}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[MCPHub]:
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'hangar.db'}")
    await store.migrate()
    box = SecretBox([Fernet.generate_key()])
    admission = Admission.fixed(trusted() | {"mcpServers": TEST_CATALOG})
    hub = MCPHub(store, SecretResolver(store, box), admission)
    hub.box = box  # type: ignore[attr-defined]
    try:
        yield hub
    finally:
        await hub.close()
        await store.close()


async def apply(hub: MCPHub, kind: str, name: str, spec: dict[str, Any]) -> None:
    resource, problems = parse_document(doc(kind, name, spec))
    assert resource is not None, problems
    if isinstance(resource, Secret):
        resource = hub.box.seal(resource)  # type: ignore[attr-defined]
    await hub.store.apply_resource("default", resource)


async def call(hub: MCPHub, server: str, tool: str, **arguments: Any) -> str:
    tools = {t.tool.name: t for t in await hub.tools("default", server, [])}
    return await tools[tool].call(arguments, CTX)


async def test_a_stdio_server_is_started_once_and_its_tools_are_listed_with_their_schemas(
    hub: MCPHub,
) -> None:
    await apply(
        hub, "MCPServer", "wb", {**workbench(), "tools": {"exclude": ["crash", "show_header"]}}
    )
    tools = await hub.tools("default", "wb", [])
    by_name = {t.definition.name: t for t in tools}
    assert set(by_name) == {"wb__echo", "wb__pid", "wb__show_token", "wb__learn"}
    echo = by_name["wb__echo"]
    assert echo.definition.parameters["properties"]["text"]["type"] == "string"
    assert echo.definition.description == "Return the text."
    assert echo.idempotent  # annotated read-only by the server
    assert not by_name["wb__learn"].idempotent
    assert await echo.call({"text": "hi"}, CTX) == "echo: hi"
    first = await call(hub, "wb", "pid")
    assert await call(hub, "wb", "pid") == first  # the same process serves every call
    # An agent may narrow a server's tools further.
    assert [t.tool.name for t in await hub.tools("default", "wb", ["e*"])] == ["echo"]
    assert hub.status("default", "wb") == {
        "state": "ready",
        "tools": 4,
        "restarts": 0,
        "error": None,
        "generation": 1,
    }


async def test_a_crash_during_a_call_is_a_clear_error_and_the_server_is_restarted(
    hub: MCPHub,
) -> None:
    await apply(hub, "MCPServer", "wb", workbench())
    before = await call(hub, "wb", "pid")
    with pytest.raises(ToolError) as crashed:
        await call(hub, "wb", "crash")
    message = crashed.value.message
    assert "closed the connection during crash" in message
    assert "not repeated: crash is not marked idempotent" in message
    after = await call(hub, "wb", "pid")
    assert after != before
    assert hub.status("default", "wb")["restarts"] == 1  # type: ignore[index]


async def test_a_server_killed_between_calls_is_restarted_and_an_idempotent_call_retried(
    hub: MCPHub,
) -> None:
    await apply(hub, "MCPServer", "wb", workbench())
    pid = int(await call(hub, "wb", "pid"))
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)
    assert await call(hub, "wb", "echo", text="still here") == "echo: still here"
    assert int(await call(hub, "wb", "pid")) != pid
    assert hub.status("default", "wb")["restarts"] == 1  # type: ignore[index]


async def test_a_host_server_that_cannot_start_keeps_what_it_printed_in_the_log(
    hub: MCPHub, caplog: pytest.LogCaptureFixture
) -> None:
    """A host program's output may say anything about the host: the administrator reads
    it in the log; the tenant is told it failed, and where to look."""
    await apply(hub, "MCPServer", "broken", {"catalog": {"name": "workbench-fail"}})
    with pytest.raises(ToolError) as failed:
        await hub.tools("default", "broken", [])
    assert "MCP server 'broken'" in failed.value.message
    assert "WORKBENCH_CONFIG" not in failed.value.message
    assert "in the server's log" in failed.value.message
    assert "WORKBENCH_CONFIG is not set" in caplog.text
    assert hub.status("default", "broken")["state"] == "failed"  # type: ignore[index]
    await apply(hub, "MCPServer", "missing", {"catalog": {"name": "missing"}})
    with pytest.raises(ToolError, match="command was not found"):
        await hub.tools("default", "missing", [])
    with pytest.raises(ResourceNotFoundError, match="MCPServer 'ghost' not found"):
        await hub.tools("default", "ghost", [])


async def test_a_namespaces_own_stdio_server_runs_in_a_sandbox(hub: MCPHub) -> None:
    """The namespace wrote the command, so it runs where a namespace's code runs: it
    sees no host file, process or variable, and what it prints is its own to read."""
    await apply(
        hub,
        "MCPServer",
        "mine",
        {
            "stdio": {
                "command": "python3",
                "args": ["-c", MINIMAL],
                "env": {"HANGAR_PROBE": "/work"},
            }
        },
    )
    assert await call(hub, "mine", "echo", text="inside") == "echo: inside"
    seen = json.loads(await call(hub, "mine", "whoami"))
    assert seen["uid"] == 1000 and seen["cwd"] == "/workspace"
    assert not seen["/etc/passwd"] and not seen["/root"] and not seen["/work"]
    assert "HANGAR_PROBE" in seen["env"] and "HOME" in seen["env"]
    assert not set(seen["env"]) & {"HANGAR_SECRET_KEYS", "USER", "SHELL", "VIRTUAL_ENV"}
    assert len(seen["processes"]) <= 4  # bwrap's init, the kernel, the server (and a shell)

    await apply(
        hub,
        "MCPServer",
        "loud",
        {
            "stdio": {
                "command": "python3",
                "args": ["-c", "import sys; print('boom', file=sys.stderr)"],
            }
        },
    )
    with pytest.raises(ToolError, match="it printed: boom"):
        await hub.tools("default", "loud", [])


async def test_a_stdio_server_reaches_only_what_its_template_allows(hub: MCPHub, site: str) -> None:
    """Its network is its template's: none by default; an allow-list through the proxy
    (and still never an internal address the namespace was not granted)."""
    await apply(
        hub, "MCPServer", "offline", {"stdio": {"command": "python3", "args": ["-c", MINIMAL]}}
    )
    refused = await call(hub, "offline", "fetch", url=site)
    assert refused.startswith("refused:")
    port = site.rsplit(":", 1)[1]
    network = {"mode": "allowlist", "allowHosts": [f"127.0.0.1:{port}"]}
    await apply(hub, "SandboxTemplate", "online", {"network": network})
    online = {"command": "python3", "args": ["-c", MINIMAL], "sandbox": "online"}
    await apply(hub, "MCPServer", "online", {"stdio": online})
    assert await call(hub, "online", "fetch", url=site) == "hello"
    hub.admission = Admission.fixed({})  # the loopback grant withdrawn
    await apply(hub, "MCPServer", "online", {"stdio": online, "timeoutSeconds": 20})
    refused = await call(hub, "online", "fetch", url=site)
    assert "refused" in refused and "Forbidden by Hangar egress policy" in refused


async def test_a_catalog_entry_fixes_what_a_namespace_may_set(hub: MCPHub) -> None:
    await apply(
        hub,
        "MCPServer",
        "sneaky",
        {"catalog": {"name": "workbench", "env": {"PYTHONPATH": "/tmp"}}},
    )
    with pytest.raises(ToolError, match="lets a namespace set only WORKBENCH_TOKEN"):
        await hub.tools("default", "sneaky", [])
    await apply(hub, "MCPServer", "unknown", {"catalog": {"name": "rm-rf"}})
    with pytest.raises(ToolError, match="not in the administrator's catalog"):
        await hub.tools("default", "unknown", [])


async def test_tool_list_changes_announced_by_the_server_are_picked_up(hub: MCPHub) -> None:
    await apply(hub, "MCPServer", "wb", workbench())
    assert await call(hub, "wb", "learn", name="fresh") == "learned fresh"
    upstream = await hub.upstream("default", "wb")
    await eventually(lambda: "fresh" in upstream.tools, timeout=10, what="the new tool")
    assert await call(hub, "wb", "fresh") == "fresh works"


async def test_secrets_reach_the_server_and_never_come_back_from_it(hub: MCPHub) -> None:
    token = "tok-4f9a2c7e1b"
    await apply(hub, "Secret", "wb-creds", {"data": {"token": token}})
    await apply(
        hub,
        "MCPServer",
        "wb",
        workbench(WORKBENCH_TOKEN={"secret": "wb-creds", "key": "token"}),
    )
    # The server got the value (it echoes it), and the hub scrubbed it from the result.
    assert await call(hub, "wb", "show_token") == "my token is [secret]"
    # A missing secret is a clear configuration error naming the field.
    await apply(
        hub,
        "MCPServer",
        "wb2",
        {"catalog": {"name": "workbench-x", "env": {"X": {"secret": "wb-creds", "key": "nope"}}}},
    )
    with pytest.raises(
        ToolError, match=r"spec\.catalog\.env\.X references key 'nope' of Secret 'wb-creds'"
    ):
        await hub.tools("default", "wb2", [])


async def test_a_new_generation_of_a_server_replaces_its_connection(hub: MCPHub) -> None:
    await apply(hub, "MCPServer", "wb", workbench())
    first = await call(hub, "wb", "pid")
    await apply(hub, "MCPServer", "wb", {**workbench(), "timeoutSeconds": 12})
    assert await call(hub, "wb", "pid") != first
    assert hub.status("default", "wb")["generation"] == 2  # type: ignore[index]


async def test_a_slow_call_times_out_with_the_limit_named(hub: MCPHub) -> None:
    await apply(hub, "MCPServer", "ev", {"catalog": {"name": "everything"}, "timeoutSeconds": 1})
    with pytest.raises(ToolError, match="did not answer within 1 s"):
        await call(hub, "ev", "trigger-long-running-operation", duration=5, steps=5)
    assert await call(hub, "ev", "echo", message="after") == "Echo: after"


# --- servers from the registries ------------------------------------------------------


async def test_server_everything_from_npm_over_stdio(hub: MCPHub) -> None:
    await apply(
        hub,
        "MCPServer",
        "ev",
        {
            "catalog": {
                "name": "everything-stdio",
                "env": {"EV_SECRET": {"secret": "ev", "key": "k"}},
            }
        },
    )
    await apply(hub, "Secret", "ev", {"data": {"k": "ev-secret-81c3d2"}})
    names = {t.tool.name for t in await hub.tools("default", "ev", [])}
    assert {"echo", "get-sum", "get-env"} <= names
    assert await call(hub, "ev", "get-sum", a=2, b=3) == "The sum of 2 and 3 is 5."
    env = await call(hub, "ev", "get-env")
    assert "EV_SECRET" in env and "ev-secret-81c3d2" not in env and "[secret]" in env


@contextlib.contextmanager
def http_server(command: list[str], port: int) -> Iterator[str]:
    """A server process listening on ``port``; killed afterwards (an open stream must
    not hold up the test)."""
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def everything_http() -> Iterator[str]:
    with http_server([str(EVERYTHING), "streamableHttp"], free_port()) as url:
        yield url


@pytest.fixture
def workbench_http() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "tests.tools.mcp_servers.workbench", "http", str(port)]
    with http_server(command, port) as url:
        yield url


@pytest.fixture
def site() -> Iterator[str]:
    """A web page on the host's loopback."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_an_http_server_on_an_internal_address_needs_the_administrators_grant(
    hub: MCPHub, workbench_http: str
) -> None:
    hub.admission = Admission.fixed({})  # no grant: loopback is the server's own
    await apply(hub, "MCPServer", "inward", {"http": {"url": workbench_http}})
    with pytest.raises(ToolError, match=r"127\.0\.0\.1 is a loopback address"):
        await hub.tools("default", "inward", [])


async def connected(hub: MCPHub, server: str, include: list[str]) -> list[Any]:
    """The server's tools, once it listens (it takes a moment to start)."""
    for _ in range(100):
        try:
            return await hub.tools("default", server, include)
        except ToolError:
            await asyncio.sleep(0.1)
    return await hub.tools("default", server, include)


async def test_server_everything_from_npm_over_streamable_http(
    hub: MCPHub, everything_http: str
) -> None:
    await apply(
        hub, "MCPServer", "ev", {"http": {"url": everything_http, "headers": {"X-Team": "a"}}}
    )
    tools = await connected(hub, "ev", ["echo", "get-sum"])
    assert sorted(t.definition.name for t in tools) == ["ev__echo", "ev__get-sum"]
    assert await call(hub, "ev", "echo", message="over http") == "Echo: over http"


async def test_workbench_over_streamable_http(hub: MCPHub, workbench_http: str) -> None:
    await apply(hub, "Secret", "api", {"data": {"key": "hdr-secret-61f0"}})
    headers = {"X-Api-Key": {"secret": "api", "key": "key"}, "X-Team": "blue"}
    await apply(hub, "MCPServer", "wb", {"http": {"url": workbench_http, "headers": headers}})
    await connected(hub, "wb", [])
    # Headers reach the server, secret ones too; echoed back, a secret is scrubbed.
    assert await call(hub, "wb", "show_header", name="X-Team") == "X-Team: blue"
    assert await call(hub, "wb", "show_header", name="X-Api-Key") == "X-Api-Key: [secret]"
    assert await call(hub, "wb", "echo", text="http") == "echo: http"
    assert await call(hub, "wb", "learn", name="later") == "learned later"
    upstream = await hub.upstream("default", "wb")
    await eventually(lambda: "later" in upstream.tools, timeout=10, what="the new tool")


async def test_mcp_server_time_from_pypi(hub: MCPHub) -> None:
    await apply(
        hub,
        "MCPServer",
        "time",
        {"catalog": {"name": "time"}},
    )
    tools = {t.definition.name for t in await hub.tools("default", "time", [])}
    assert tools == {"time__get_current_time", "time__convert_time"}
    text = await call(
        hub,
        "time",
        "convert_time",
        source_timezone="UTC",
        time="12:00",
        target_timezone="Asia/Tokyo",
    )
    assert '"datetime": "' in text and "21:00" in text


def test_qualified_names_fit_chat_apis() -> None:
    assert qualified_name("github", "create_issue") == "github__create_issue"
    assert qualified_name("fs", "read.file/v2") == "fs__read_file_v2"
    long = qualified_name("server", "x" * 100)
    assert len(long) == 64 and long != qualified_name("server", "x" * 99)


class AuthorizationServer:
    """A minimal OAuth 2.1 authorization server for the client-credentials grant: its
    metadata and a token endpoint that knows one client."""

    def __init__(self, client_id: str, client_secret: str, token: str) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.grants: list[str] = []

        async def metadata(_: Request) -> JSONResponse:
            return JSONResponse(
                {
                    "issuer": self.issuer,
                    "token_endpoint": f"{self.issuer}/token",
                    "authorization_endpoint": f"{self.issuer}/authorize",
                    "response_types_supported": ["code"],
                    "grant_types_supported": ["client_credentials"],
                    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                }
            )

        async def issue(request: Request) -> JSONResponse:
            import base64

            form = await request.form()
            scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
            given = base64.b64decode(encoded).decode() if scheme.lower() == "basic" else ""
            if given != f"{client_id}:{client_secret}":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            self.grants.append(str(form.get("grant_type")))
            return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

        self.app = Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", metadata),
                Route("/token", issue, methods=["POST"]),
            ]
        )

    def __enter__(self) -> AuthorizationServer:
        import threading

        import uvicorn

        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


async def test_oauth_client_credentials_from_a_secret_reach_a_protected_server(
    hub: MCPHub,
) -> None:
    with AuthorizationServer("hangar-client", "cs-93be1f0a77", "at-5d2c") as issuer:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "tests.tools.mcp_servers.workbench",
            "oauth",
            str(port),
            issuer.issuer,
            "at-5d2c",
        ]
        with http_server(command, port) as url:
            await apply(hub, "Secret", "oauth", {"data": {"client-secret": "cs-93be1f0a77"}})
            oauth = {
                "clientId": "hangar-client",
                "clientSecret": {"secret": "oauth", "key": "client-secret"},
                "issuer": issuer.issuer,
                "scope": "tools",
            }
            await apply(hub, "MCPServer", "guarded", {"http": {"url": url, "oauth": oauth}})
            tools = await connected(hub, "guarded", ["echo"])
            assert [t.definition.name for t in tools] == ["guarded__echo"]
            assert await call(hub, "guarded", "echo", text="authorized") == "echo: authorized"
            assert issuer.grants == ["client_credentials"]
            # Without credentials the same server refuses, and says so.
            await apply(hub, "MCPServer", "open", {"http": {"url": url}})
            with pytest.raises(ToolError, match="MCP server 'open'"):
                await hub.tools("default", "open", [])

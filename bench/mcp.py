"""The MCP hub's own cost: a tool call through Hangar next to the same call made
directly with the official SDK, in one run; and Hangar's aggregated MCP endpoint
(``/v1/mcp``) with 10 upstream servers behind it.

Upstreams are the SDK-built workbench server (tests/tools/mcp_servers/workbench.py)
over stdio. Direct and hub calls alternate pair by pair, so both see the same
machine; the ratio of p50s (and p99s) is what the hub adds.

Rows:
  direct SDK      mcp.Client(stdio) -> call_tool("echo")
  hub             MCPHub -> MCPTool.call (what an agent's tool call goes through)
  endpoint call   an SDK client -> Hangar /v1/mcp (streamable HTTP) -> hub -> upstream
  endpoint list   tools/list on /v1/mcp: 10 servers' tools and the agents, merged
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from cryptography.fernet import Fernet
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from bench.sandboxes import percentile
from hangar.spec import parse_document
from hangar.store.secrets import SecretBox, SecretResolver
from hangar.store.sql import SqlStore
from hangar.tools.base import ToolContext
from hangar.tools.mcp import MCPHub

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVERS = 10
WORKBENCH = {
    "command": sys.executable,
    "args": ["-m", "tests.tools.mcp_servers.workbench"],
    "cwd": str(ROOT),
}


def document(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "hangar.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


async def timed(once: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await once()
    return (time.perf_counter() - start) * 1000


async def hub_against_sdk(runs: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="hangar-bench-mcp-"))
    store = SqlStore(f"sqlite+aiosqlite:///{folder / 'hangar.db'}")
    await store.migrate()
    hub = MCPHub(store, SecretResolver(store, SecretBox([Fernet.generate_key()])))
    resource, _ = parse_document(document("MCPServer", "wb", {"stdio": WORKBENCH}))
    assert resource is not None
    await store.apply_resource("default", resource)
    tool = next(t for t in await hub.tools("default", "wb", []) if t.tool.name == "echo")
    context = ToolContext("default", "bench", "bench")
    arguments = {"text": "hello"}
    try:
        async with Client(StdioServerParameters(**WORKBENCH)) as direct:  # type: ignore[arg-type]

            async def sdk() -> None:
                result = await direct.call_tool("echo", arguments)
                assert not result.is_error

            async def through_hub() -> None:
                assert await tool.call(arguments, context) == "echo: hello"

            for _ in range(50):  # warm both paths
                await sdk()
                await through_hub()
            sdk_ms: list[float] = []
            hub_ms: list[float] = []
            for i in range(runs):
                pair = ((sdk, sdk_ms), (through_hub, hub_ms))
                for once, samples in pair if i % 2 == 0 else pair[::-1]:
                    samples.append(await timed(once))
    finally:
        await hub.close()
        await store.close()
    return {
        "runs": runs,
        "sdk_p50_ms": percentile(sdk_ms, 0.5),
        "sdk_p99_ms": percentile(sdk_ms, 0.99),
        "hub_p50_ms": percentile(hub_ms, 0.5),
        "hub_p99_ms": percentile(hub_ms, 0.99),
        "p50_ratio": percentile(hub_ms, 0.5) / percentile(sdk_ms, 0.5),
        "p99_ratio": percentile(hub_ms, 0.99) / percentile(sdk_ms, 0.99),
        "paired_ratio_p50": statistics.median(h / s for h, s in zip(hub_ms, sdk_ms, strict=True)),
    }


def aggregated_endpoint(runs: int) -> dict[str, Any]:
    """A real Hangar (thread, SQLite) with 10 stdio upstreams, reached over HTTP."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers import ServerThread

    home = Path(tempfile.mkdtemp(prefix="hangar-bench-mcp-home-"))
    server = ServerThread(home).start()
    try:
        with server.client() as api:
            documents = [
                document("MCPServer", f"wb{i}", {"stdio": WORKBENCH}) for i in range(SERVERS)
            ]
            documents.append(
                document("Model", "m", {"provider": "scripted", "script": [{"text": "hi"}]})
            )
            documents.append(document("Agent", "greeter", {"model": "m"}))
            api.post("/v1/apply", json=documents).raise_for_status()
            api.get("/v1/resources/mcpservers").raise_for_status()  # connects all ten
        return asyncio.run(_endpoint(server.url, server.admin_key, runs))
    finally:
        server.stop()


async def _endpoint(url: str, key: str, runs: int) -> dict[str, Any]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"})
    async with Client(streamable_http_client(f"{url}/v1/mcp", http_client=http)) as client:
        listed = await client.list_tools(cache_mode="refresh")
        count = len(listed.tools)

        async def call() -> None:
            result = await client.call_tool("wb7__echo", {"text": "hello"})
            assert not result.is_error, result

        async def listing() -> None:
            assert len((await client.list_tools(cache_mode="refresh")).tools) == count

        for _ in range(20):
            await call()
            await listing()
        call_ms = [await timed(call) for _ in range(runs)]
        list_ms = [await timed(listing) for _ in range(runs)]
    return {
        "tools": count,
        "call_p50_ms": percentile(call_ms, 0.5),
        "call_p99_ms": percentile(call_ms, 0.99),
        "list_p50_ms": percentile(list_ms, 0.5),
        "list_p99_ms": percentile(list_ms, 0.99),
    }


def main(runs: int) -> None:
    print("measuring the hub against the SDK...", flush=True)
    hub = asyncio.run(hub_against_sdk(runs))
    print(f"measuring /v1/mcp with {SERVERS} upstream servers...", flush=True)
    endpoint = aggregated_endpoint(max(50, runs // 4))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ratio_p50 = f"**{hub['p50_ratio']:.2f}×** (per pair {hub['paired_ratio_p50']:.2f}×)"
    ratio_p99 = f"**{hub['p99_ratio']:.2f}×**"
    report = f"""# MCP hub

{stamp}, {platform.machine()}, {os.cpu_count()} cores. Upstream: the SDK-built workbench
server over stdio, tool `echo`. Direct SDK and hub calls alternate pair by pair
({hub["runs"]} pairs).

| path | p50 ms | p99 ms |
| --- | ---: | ---: |
| direct SDK call | {hub["sdk_p50_ms"]:.2f} | {hub["sdk_p99_ms"]:.2f} |
| through Hangar's hub | {hub["hub_p50_ms"]:.2f} | {hub["hub_p99_ms"]:.2f} |
| **hub ÷ SDK** | {ratio_p50} | {ratio_p99} |

Hangar's aggregated endpoint `/v1/mcp` (streamable HTTP, SDK client) with {SERVERS}
upstream servers ({endpoint["tools"]} tools, agents included):

| request | p50 ms | p99 ms |
| --- | ---: | ---: |
| tools/call (`wb7__echo`) | {endpoint["call_p50_ms"]:.2f} | {endpoint["call_p99_ms"]:.2f} |
| tools/list | {endpoint["list_p50_ms"]:.2f} | {endpoint["list_p99_ms"]:.2f} |
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mcp.md").write_text(report)
    (RESULTS / "mcp.json").write_text(
        json.dumps({"when": stamp, "hub": hub, "endpoint": endpoint}, indent=2)
    )
    print(report)

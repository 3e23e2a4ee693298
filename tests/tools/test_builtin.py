"""Built-in tools: current_time, and http_get confined to the agent's egress allow-list."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hangar.egress import AddressPolicy
from hangar.errors import EgressDeniedError, ToolError, ToolNotAllowedError
from hangar.spec.hosts import host_allowed
from hangar.tools import BUILTIN_TOOLS, ToolContext
from hangar.tools.builtin import MAX_BODY_CHARS

LOOPBACK = AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),))
"""The test sites listen on loopback, which only a namespace granted it may reach."""


def ctx(*hosts: str, policy: AddressPolicy = LOOPBACK) -> ToolContext:
    return ToolContext(namespace="default", run_id="r", agent="a", allow_hosts=hosts, egress=policy)


def here(site: str) -> str:
    """The allow-list entry of a test site: its host and its port."""
    return site.removeprefix("http://")


@pytest.fixture
def site() -> Iterator[str]:
    """A real HTTP server on loopback: /hello answers, /away redirects off the list."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/endless":  # a body with no end, sent until the reader goes
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"all work and no play " * 1000)
                except OSError:
                    return
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://elsewhere.invalid/")
                self.end_headers()
                return
            body = b"hello from the site"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


async def test_current_time_in_a_named_zone() -> None:
    value = await BUILTIN_TOOLS["current_time"].call({"timezone": "Asia/Tokyo"}, ctx())
    assert datetime.fromisoformat(value).utcoffset().total_seconds() == 9 * 3600  # type: ignore[union-attr]
    with pytest.raises(ToolError, match="unknown time zone"):
        await BUILTIN_TOOLS["current_time"].call({"timezone": "Mars/Olympus"}, ctx())


async def test_http_get_reaches_an_allowed_host(site: str) -> None:
    result = await BUILTIN_TOOLS["http_get"].call({"url": f"{site}/hello"}, ctx(here(site)))
    assert result == "HTTP 200\n\nhello from the site"


async def test_http_get_reads_no_more_of_a_body_than_it_returns(site: str) -> None:
    result = await BUILTIN_TOOLS["http_get"].call({"url": f"{site}/endless"}, ctx(here(site)))
    head, body = result.split("\n\n", 1)
    assert head == "HTTP 200"
    assert body.startswith("all work and no play all work")
    assert body.endswith(f"\n[truncated at {MAX_BODY_CHARS} characters]")
    assert len(body) == MAX_BODY_CHARS + len(f"\n[truncated at {MAX_BODY_CHARS} characters]")


async def test_http_get_refuses_hosts_off_the_list_before_connecting(site: str) -> None:
    with pytest.raises(ToolNotAllowedError) as exc:
        await BUILTIN_TOOLS["http_get"].call({"url": f"{site}/hello"}, ctx("example.com"))
    assert "127.0.0.1" in exc.value.message and "allowHosts" in (exc.value.hint or "")
    with pytest.raises(ToolNotAllowedError):
        await BUILTIN_TOOLS["http_get"].call({"url": f"{site}/hello"}, ctx())


async def test_http_get_checks_every_redirect_hop(site: str) -> None:
    with pytest.raises(ToolNotAllowedError, match=r"elsewhere\.invalid"):
        await BUILTIN_TOOLS["http_get"].call({"url": f"{site}/away"}, ctx(here(site)))


async def test_http_get_only_speaks_http() -> None:
    with pytest.raises(ToolNotAllowedError, match="only http"):
        await BUILTIN_TOOLS["http_get"].call({"url": "file:///etc/passwd"}, ctx("*"))


@pytest.mark.parametrize(
    ("host", "port", "patterns", "allowed"),
    [
        ("api.example.com", 443, ["api.example.com"], True),
        ("API.Example.com.", 80, ["api.example.com"], True),
        ("a.b.example.com", 443, ["*.example.com"], True),
        ("example.com", 443, ["*.example.com"], False),
        ("evil-example.com", 443, ["*.example.com"], False),
        ("example.com.evil.io", 443, ["example.com"], False),
        ("anything", 443, [], False),
        ("api.example.com", 8080, ["api.example.com"], False),
        ("api.example.com", 8080, ["api.example.com:8080"], True),
        ("api.example.com", 443, ["api.example.com:8080"], False),
        ("::1", 8080, ["[::1]:8080"], True),
    ],
)
def test_allow_list_patterns(host: str, port: int, patterns: list[str], allowed: bool) -> None:
    assert host_allowed(host, port, patterns) is allowed


async def test_http_get_to_an_allowed_host_on_loopback_needs_the_administrators_grant(
    site: str,
) -> None:
    """The tenant's allow-list names the host; whether its address may be reached is
    the administrator's to grant."""
    with pytest.raises(EgressDeniedError, match="loopback"):
        await BUILTIN_TOOLS["http_get"].call(
            {"url": f"{site}/hello"}, ctx(here(site), policy=AddressPolicy())
        )

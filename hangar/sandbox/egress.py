"""The egress proxy: how a sandbox in network mode ``allowlist`` reaches the hosts its
template names (on the ports they name: 80 and 443 unless a pattern says otherwise),
and nothing else: never an internal address, whatever a name resolves to (the
connection goes to the address ``hangar.egress`` checked).

The sandbox keeps no network of its own (a fresh namespace with loopback only). The
host runs one proxy per sandbox on a Unix socket that is bound into it; the kernel
relays ``127.0.0.1:3128`` inside the sandbox to that socket and the environment
names it in ``HTTP_PROXY``/``HTTPS_PROXY``, so pip, urllib, requests and curl use it
unchanged. Every request names its host (``CONNECT host:port`` for HTTPS, an
absolute URL for plain HTTP), and the host decides by the allow-list *before* any
connection is opened: the sandbox never resolves a name nor learns an address, and
a denial is an HTTP 403 whose reason says it came from this policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from hangar.egress import PUBLIC_ONLY, AddressPolicy, open_connection
from hangar.errors import EgressDeniedError, HangarError
from hangar.spec.hosts import host_allowed

log = logging.getLogger(__name__)

PROXY_PORT = 3128
"""Where the proxy answers inside the sandbox (its own loopback)."""
SOCKET_IN_SANDBOX = "/.hangar/egress.sock"
DENIED_REASON = "Forbidden by Hangar egress policy"
"""The 403's reason phrase: clients put it in their errors, and the kernel reads it
there to report the call as ``denied``."""
HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS = 64
CHUNK = 64 * 1024


def proxy_env() -> dict[str, str]:
    """The variables that point the sandbox's programs at the proxy."""
    url = f"http://127.0.0.1:{PROXY_PORT}"
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    return {
        **env,
        "NO_PROXY": "",
        "no_proxy": "",
        "HANGAR_EGRESS_SOCKET": SOCKET_IN_SANDBOX,
        "HANGAR_EGRESS_PORT": str(PROXY_PORT),
    }


class BadRequest(Exception):
    pass


@dataclass
class Target:
    host: str
    port: int
    forward: bytes | None
    """The request to send upstream for plain HTTP; None for a CONNECT tunnel."""


def parse_head(head: bytes) -> Target:
    """Where a proxied request goes, from its request line and headers."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise BadRequest(f"not an HTTP request line: {lines[0][:100]!r}")
    method, target, version = parts
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise BadRequest(f"CONNECT needs host:port, got {target[:100]!r}")
        return Target(host.strip("[]"), int(port), None)
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise BadRequest(f"send an absolute http:// URL or CONNECT for https, got {target[:100]!r}")
    try:
        url_port = url.port or 80
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    # One request per connection: a second one on a kept-alive connection could name
    # another host and would reach this one unchecked.
    headers = [
        line
        for line in lines[1:]
        if line and not line.lower().startswith(("proxy-", "connection:", "keep-alive:"))
    ]
    request = "\r\n".join([f"{method} {path} {version}", *headers, "Connection: close", "", ""])
    return Target(url.hostname, url_port, request.encode("latin-1"))


@dataclass
class EgressProxy:
    allow_hosts: list[str]
    policy: AddressPolicy = PUBLIC_ONLY
    label: str = ""
    allowed: int = 0
    denied: int = 0
    denied_hosts: list[str] = field(default_factory=list)
    _folder: Path | None = None
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def socket_path(self) -> Path:
        assert self._folder is not None, "start the proxy first"
        return self._folder / "egress.sock"

    async def start(self) -> EgressProxy:
        self._folder = Path(tempfile.mkdtemp(prefix="hangar-egress-"))
        # The sandbox runs as another host user (nobody): it must reach the socket.
        self._folder.chmod(0o711)
        self._server = await asyncio.start_unix_server(
            self._accept, path=str(self.socket_path), limit=HEAD_LIMIT
        )
        os.chmod(self.socket_path, 0o666)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if len(self._tasks) > MAX_CONNECTIONS:
                await _answer(writer, 429, "Too Many Requests", "too many open connections")
                return
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            target = parse_head(head)
        except (asyncio.LimitOverrunError, ValueError):
            await _answer(writer, 400, "Bad Request", "request head too long")
            return
        except TimeoutError:
            return
        except BadRequest as exc:
            await _answer(writer, 400, "Bad Request", str(exc))
            return
        if not host_allowed(target.host, target.port, self.allow_hosts):
            allowed = ", ".join(self.allow_hosts) or "none"
            await self._deny(
                writer,
                target,
                f"{target.host}:{target.port} is not on this sandbox's network allow-list "
                f"(allowed: {allowed[:500]}); add it (with ':port' unless it is 80 or 443) "
                "to the SandboxTemplate's spec.network.allowHosts",
            )
            return
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                up_reader, up_writer = await open_connection(self.policy, target.host, target.port)
        except EgressDeniedError as exc:
            await self._deny(writer, target, exc.message)
            return
        except (OSError, TimeoutError, HangarError) as exc:
            await _answer(
                writer, 502, "Bad Gateway", f"cannot reach {target.host}:{target.port}: {exc}"
            )
            return
        self.allowed += 1
        try:
            if target.forward is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(target.forward)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    async def _deny(self, writer: asyncio.StreamWriter, target: Target, message: str) -> None:
        self.denied += 1
        self.denied_hosts = [*self.denied_hosts[-19:], target.host]
        log.info("sandbox %s: egress to %s:%s denied", self.label, target.host, target.port)
        await _answer(writer, 403, DENIED_REASON, message)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await source.read(CHUNK):
            sink.write(chunk)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()


async def _answer(writer: asyncio.StreamWriter, status: int, reason: str, message: str) -> None:
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()

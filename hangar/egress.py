"""Every connection a tenant can cause leaves through here.

A tenant names hosts (a model's base URL, an MCP server's URL, an ``http_get`` call,
a knowledge base's URL sources, what its sandboxes reach through the egress proxy);
none of those may be turned inward, at the server's own loopback, the private
network it sits in, or a cloud's metadata service. So every such connection:

1. resolves the name itself and refuses it if *any* address it resolves to is
   loopback, private, link-local, CGNAT, multicast, unspecified, reserved or a
   metadata address, in IPv4, IPv6 or IPv6's ways of carrying IPv4 (mapped,
   NAT64, 6to4), unless the administrator allowed that range for the namespace;
2. connects to the address it checked, never resolving the name again, so a name
   that answers a public address to the check and 127.0.0.1 to the connection
   (DNS rebinding) reaches nothing.

The HTTP client (``httpx2``, which the ``openai``, ``anthropic`` and ``mcp`` SDKs use)
gets a transport whose network backend does both; the sandbox proxy calls
``open_connection``. Decimal, octal and hex spellings of an address
(``http://2130706433/``) need no special case: they resolve to the address they
spell, and the address is what is checked.

This module also holds the one GET a tool or a knowledge base makes on a tenant's
behalf (``fetch``), which checks the tenant's host allow-list on every redirect hop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx2

from hangar.errors import EgressDeniedError, ToolError, ToolNotAllowedError
from hangar.spec.hosts import host_allowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

RESOLVE_SECONDS = 10.0
MAX_REDIRECTS = 5

_METADATA = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "192.0.0.192", "fd00:ec2::254")
}
_SPECIAL = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/127",
        "64:ff9b:1::/48",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
"""IANA's special-purpose ranges, written out: the standard library's ``is_global``
has changed between Python versions and misses some (192.0.0.192, 64:ff9b:1::/48)."""
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def carried(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped ``::ffff:a.b.c.d``, NAT64
    ``64:ff9b::a.b.c.d``, 6to4 ``2002:aabb:ccdd::``), or the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def why_internal(address: IPAddress) -> str | None:
    """What kind of address a tenant may not reach this is, or None for a public one."""
    inner = carried(address)
    if inner in _METADATA:
        return "a cloud metadata address"
    if inner.is_loopback:
        return "a loopback address"
    if inner.is_unspecified:
        return "the unspecified address"
    if inner.is_link_local:
        return "a link-local address"
    if inner.is_multicast:
        return "a multicast address"
    if inner.is_private or any(inner in network for network in _SPECIAL):
        return "a private or special-purpose address"
    if inner.is_reserved or not inner.is_global:
        return "a reserved address"
    return None


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses one namespace's connections may reach: every public one, and
    the private ranges its administrator allowed. ``unrestricted`` is for endpoints
    the administrator configured (a model URL from the server's environment)."""

    allowed: tuple[IPNetwork, ...] = ()
    unrestricted: bool = False

    def refusal(self, address: IPAddress) -> str | None:
        """Why the address may not be reached, or None."""
        if self.unrestricted:
            return None
        why = why_internal(address)
        if why is None:
            return None
        inner = carried(address)
        if any(inner in network or address in network for network in self.allowed):
            return None
        return why

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for ``host``: every one it resolves to, each
        checked. Raises ``EgressDeniedError`` if any is refused (a name that answers
        both a public and an internal address is not trusted with either)."""
        name = host.strip("[]")
        try:
            found = [ipaddress.ip_address(name.split("%", 1)[0])]
        except ValueError:
            found = await _lookup(name, port)
        for address in found:
            why = self.refusal(address)
            if why is not None:
                shown = f"{name} ({address})" if str(address) != name else name
                raise EgressDeniedError(
                    f"{shown} is {why}; connections a namespace causes may not reach it",
                    hint="use a public address, or ask the administrator to allow this range "
                    "for the namespace (admission: egress)",
                    details={"host": name[:253], "address": str(address)},
                )
        return [str(address) for address in found]


UNRESTRICTED = AddressPolicy(unrestricted=True)
PUBLIC_ONLY = AddressPolicy()


async def _lookup(name: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise ToolError(f"cannot resolve {name[:253]!r}: {exc}") from None
    seen: dict[str, IPAddress] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]
        seen.setdefault(text, ipaddress.ip_address(text))
    if not seen:
        raise ToolError(f"{name[:253]!r} resolves to no address")
    return list(seen.values())


# --- HTTP clients ----------------------------------------------------------------------


class GuardedBackend:
    """An ``httpcore`` (or ``httpcore2``) network backend that resolves and checks each
    host by the policy and connects to the address it checked. TLS still verifies the
    certificate against the host name the request named."""

    def __init__(self, policy: AddressPolicy, inner: Any) -> None:
        self.policy = policy
        self.inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        addresses = await self.policy.resolve(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except Exception as exc:  # the next address may answer; the last error says why
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, *args: Any, **kwargs: Any) -> Any:
        raise EgressDeniedError("connections a namespace causes may not use Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def http_transport(policy: AddressPolicy) -> httpx2.AsyncHTTPTransport:
    """A transport that connects only where ``policy`` allows."""
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    pool = transport._pool
    # httpcore takes a network backend only through the pool's constructor, which
    # httpx does not expose; the attribute is the one the pool's connections use
    # (tests/test_egress.py fails if a new version stops using it).
    pool._network_backend = GuardedBackend(policy, pool._network_backend)  # type: ignore[assignment]
    return transport


def http_client(policy: AddressPolicy, **kwargs: Any) -> httpx2.AsyncClient:
    """An HTTP client that connects only where ``policy`` allows (and ignores the
    server's proxy variables, which would take the connection past the check). It is
    the client the model SDKs, the MCP SDK and ``fetch`` use."""
    return httpx2.AsyncClient(transport=http_transport(policy), trust_env=False, **kwargs)


async def open_connection(
    policy: AddressPolicy, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to ``host`` by the policy (the sandbox egress proxy's)."""
    failure: OSError | None = None
    for address in await policy.resolve(host, port):
        try:
            return await asyncio.open_connection(address, port)
        except OSError as exc:
            failure = exc
    assert failure is not None
    raise failure


def first_denial(exc: BaseException) -> EgressDeniedError | None:
    """The egress refusal behind an SDK's wrapped error (``openai`` and ``anthropic``
    turn every transport error into their own), so it can be reported as itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, EgressDeniedError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# --- the GET made on a tenant's behalf ------------------------------------------------


AGENT_LIST = ("this agent", "the Agent's spec.egress.allowHosts")
"""Whose allow-list a refusal names, and where it is written (an agent's, by default)."""


def check_url(
    url: str, allow_hosts: Sequence[str], owner: tuple[str, str] = AGENT_LIST
) -> tuple[str, int]:
    """The URL's host and port if the allow-list admits them; a clear refusal if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ToolNotAllowedError(f"only http and https URLs may be fetched, got {url[:200]!r}")
    host = parts.hostname or ""
    if not host:
        raise ToolNotAllowedError(f"URL {url[:200]!r} has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ToolNotAllowedError(f"URL {url[:200]!r} has an invalid port") from None
    if not host_allowed(host, port, tuple(allow_hosts)):
        allowed = ", ".join(allow_hosts) or "none"
        raise ToolNotAllowedError(
            f"{host}:{port} is not on {owner[0]}'s egress allow-list (allowed: {allowed[:500]})",
            hint=f"add the host (with ':port' unless it is 80 or 443) to {owner[1]}",
        )
    return host, port


@dataclass(frozen=True)
class Fetched:
    """A GET's answer after its redirects, with at most the body's first ``limit``
    bytes."""

    url: str
    status: int
    content_type: str | None
    encoding: str
    body: bytes
    truncated: bool
    """The body went on past ``limit``: what is here is its beginning."""

    def text(self) -> str:
        return self.body.decode(self.encoding, errors="replace")


async def fetch(
    url: str,
    allow_hosts: Sequence[str],
    *,
    policy: AddressPolicy,
    limit: int,
    timeout: float,
    owner: tuple[str, str] = AGENT_LIST,
) -> Fetched:
    """GET ``url``, following redirects by hand so that every hop is checked against
    the allow-list (a redirect must not escape it) and the address policy, and reading
    at most ``limit`` bytes of the body (a huge answer must not fill the server's
    memory).

    Raises ``ToolNotAllowedError`` for a URL off the list or an address the policy
    refuses, ``ToolError`` when the host cannot be reached or redirects too often."""
    async with http_client(policy, timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allow_hosts, owner)
            try:
                async with client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    body = bytearray()
                    truncated = False
                    async for piece in response.aiter_bytes():
                        body += piece
                        if len(body) > limit:
                            del body[limit:]
                            truncated = True
                            break
                    return Fetched(
                        url=url,
                        status=response.status_code,
                        content_type=response.headers.get("content-type"),
                        encoding=response.charset_encoding or "utf-8",
                        body=bytes(body),
                        truncated=truncated,
                    )
            except httpx2.HTTPError as exc:
                raise ToolError(f"GET {url[:200]} failed: {exc}") from None
    raise ToolError(f"GET {url[:200]}: more than {MAX_REDIRECTS} redirects")

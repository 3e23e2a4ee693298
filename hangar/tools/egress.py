"""The egress allow-list: which hosts a tool may reach on an agent's behalf, and the
one GET that every fetch on someone's behalf goes through (the http_get tool, a
knowledge base's URL sources)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from hangar.errors import ToolError, ToolNotAllowedError
from hangar.spec.hosts import host_allowed

__all__ = ["Fetched", "check_url", "fetch", "host_allowed"]

MAX_REDIRECTS = 5


def check_url(url: str, allow_hosts: tuple[str, ...] | list[str]) -> str:
    """Return the URL's host if the allow-list admits it; raise a clear refusal if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ToolNotAllowedError(f"only http and https URLs may be fetched, got {url!r}")
    host = parts.hostname or ""
    if not host:
        raise ToolNotAllowedError(f"URL {url!r} has no host")
    if not host_allowed(host, allow_hosts):
        allowed = ", ".join(allow_hosts) or "none"
        raise ToolNotAllowedError(
            f"host {host!r} is not on this agent's egress allow-list (allowed: {allowed})",
            hint="add the host to the Agent's spec.egress.allowHosts",
        )
    return host


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
    url: str, allow_hosts: tuple[str, ...] | list[str], *, limit: int, timeout: float
) -> Fetched:
    """GET ``url``, following redirects by hand so that every hop is checked against
    the allow-list (a redirect must not escape it), and reading at most ``limit`` bytes
    of the body (a huge answer must not fill the server's memory).

    Raises ``ToolNotAllowedError`` for a URL off the list, ``ToolError`` when the host
    cannot be reached or redirects too often."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, allow_hosts)
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
            except httpx.HTTPError as exc:
                raise ToolError(f"GET {url} failed: {exc}") from None
    raise ToolError(f"GET {url}: more than {MAX_REDIRECTS} redirects")

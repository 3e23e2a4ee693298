"""The egress allow-list: which hosts a tool may reach on an agent's behalf."""

from __future__ import annotations

from urllib.parse import urlsplit

from hangar.errors import ToolNotAllowedError
from hangar.spec.hosts import host_allowed

__all__ = ["check_url", "host_allowed"]


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

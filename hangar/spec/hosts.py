"""Host allow-lists, as written in specs (``Agent.spec.egress.allowHosts``,
``SandboxTemplate.spec.network.allowHosts``) and as enforced wherever traffic leaves.

A pattern is a host name or address, or ``*.example.com`` for any subdomain, with an
optional port: ``api.example.com`` admits ports 80 and 443 (HTTP and HTTPS),
``db.example.com:5432`` admits that port only. A scheme or a path in a pattern is a
mistake worth reporting at apply time, not a silent never-match at run time.

A pattern says which *names* a tenant means to reach; whether the address a name
resolves to may be reached at all is decided apart, by ``hangar.egress``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator

DEFAULT_PORTS = frozenset({80, 443})
"""The ports a pattern without one admits."""

_HOST = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_\-.]*[a-z0-9_])?$|^[0-9a-f:.]+$")


def split_pattern(pattern: str) -> tuple[str, int | None]:
    """``(host, port)`` of a pattern: ``[::1]:8080`` and ``host:8080`` carry a port,
    a bare IPv6 address (several colons, no brackets) does not."""
    text = pattern.strip().lower().rstrip(".")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host.rstrip("."), int(port) if port.isdigit() else -1
    return text, None


def host_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable host pattern, or None if it is."""
    text = pattern.strip().lower()
    if "://" in text or "/" in text:
        return f"{pattern[:100]!r} looks like a URL; write only the host, e.g. 'api.example.com'"
    host, port = split_pattern(text)
    if port is not None and not 0 < port < 65536:
        return f"{pattern[:100]!r} has a port that is not a number from 1 to 65535"
    if not host or len(host) > 253 or not _HOST.match(host):
        return (
            f"{pattern[:100]!r} is not a host name, an address or a '*.domain' pattern "
            "(optionally with ':port')"
        )
    return None


def host_allowed(host: str, port: int, allow_hosts: Sequence[str]) -> bool:
    """Exact names and ``*.example.com`` patterns (case and brackets aside), on a port
    the pattern names, or on 80 and 443 for a pattern that names none."""
    host = host.lower().rstrip(".").strip("[]")
    for pattern in allow_hosts:
        wanted, wanted_port = split_pattern(pattern)
        if not fnmatchcase(host, wanted):
            continue
        if port == wanted_port or (wanted_port is None and port in DEFAULT_PORTS):
            return True
    return False


def _check_patterns(patterns: list[str]) -> list[str]:
    if len(patterns) > 1000:
        raise ValueError("at most 1000 host patterns")
    for pattern in patterns:
        problem = host_pattern_problem(pattern)
        if problem is not None:
            raise ValueError(problem)
    return [pattern.strip() for pattern in patterns]


HostPatterns = Annotated[list[str], AfterValidator(_check_patterns)]
"""A list of host patterns, each checked when the spec is applied."""

"""Host allow-lists, as written in specs (``Agent.spec.egress.allowHosts``,
``SandboxTemplate.spec.network.allowHosts``) and as enforced wherever traffic leaves.

A pattern is a host name or address, or ``*.example.com`` for any subdomain. It names
hosts only: a scheme, a path or a port in it is a mistake worth reporting at apply
time, not a silent never-match at run time.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from typing import Annotated

from pydantic import AfterValidator

_PATTERN = re.compile(r"^(\*\.)?[a-z0-9_]([a-z0-9_\-.]*[a-z0-9_])?$|^\[?[0-9a-f:.]+\]?$")


def host_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable host pattern, or None if it is."""
    text = pattern.strip().lower()
    if "://" in text or "/" in text:
        return f"{pattern!r} looks like a URL; write only the host, e.g. 'api.example.com'"
    if text.count(":") == 1:
        return f"{pattern!r} has a port; patterns name hosts, every port of them is allowed"
    if not text or not _PATTERN.match(text):
        return f"{pattern!r} is not a host name, an address or a '*.domain' pattern"
    return None


def host_allowed(host: str, allow_hosts: tuple[str, ...] | list[str]) -> bool:
    """Exact names and ``*.example.com`` patterns; comparison ignores case and brackets."""
    host = host.lower().rstrip(".").strip("[]")
    return any(
        fnmatchcase(host, pattern.lower().rstrip(".").strip("[]")) for pattern in allow_hosts
    )


def _check_patterns(patterns: list[str]) -> list[str]:
    for pattern in patterns:
        problem = host_pattern_problem(pattern)
        if problem is not None:
            raise ValueError(problem)
    return [pattern.strip() for pattern in patterns]


HostPatterns = Annotated[list[str], AfterValidator(_check_patterns)]
"""A list of host patterns, each checked when the spec is applied."""

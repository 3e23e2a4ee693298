"""Built-in tools every agent may list by name in ``spec.tools[].builtin``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hangar.egress import fetch
from hangar.errors import ToolError
from hangar.spec.agent import BuiltinToolName
from hangar.tools.base import Tool, ToolContext
from hangar.tools.function import FunctionTool
from hangar.tools.sandbox import SANDBOX_TOOLS

MAX_BODY_CHARS = 20_000


def current_time(timezone: str = "UTC") -> str:
    """The current date and time in ISO 8601, in an IANA time zone such as 'Europe/Paris'."""
    try:
        zone = UTC if timezone.upper() == "UTC" else ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {timezone!r}; use an IANA name like 'Asia/Tokyo'"
        ) from None
    return datetime.now(zone).isoformat()


async def http_get(url: str, ctx: ToolContext) -> str:
    """Fetch a URL with HTTP GET and return its status and text. Only hosts on the
    agent's egress allow-list can be reached."""
    # A character is at most 4 bytes of UTF-8: this many bytes hold the characters kept.
    answer = await fetch(
        url, ctx.allow_hosts, policy=ctx.egress, limit=4 * MAX_BODY_CHARS, timeout=20
    )
    body = answer.text()
    if answer.truncated or len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + f"\n[truncated at {MAX_BODY_CHARS} characters]"
    return f"HTTP {answer.status}\n\n{body}"


BUILTIN_TOOLS: dict[str, Tool] = {
    "current_time": FunctionTool(current_time, idempotent=True),
    "http_get": FunctionTool(http_get, idempotent=True),
    **SANDBOX_TOOLS,
}

assert set(BUILTIN_TOOLS) == set(get_args(BuiltinToolName)), "spec and tools disagree"

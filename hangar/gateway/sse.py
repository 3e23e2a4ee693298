"""Server-Sent Events framing."""

from __future__ import annotations

import json
from typing import Any

from hangar.runtime.bus import BusItem

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def frame(data: Any, *, event: str | None = None, id: int | None = None) -> str:
    lines = []
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return "\n".join(lines) + "\n\n"


def event_frame(item: BusItem) -> str:
    """A run event: stored ones carry their ``seq`` as the SSE id, for Last-Event-ID."""
    body = {"seq": item.seq, "type": item.type, "data": item.data}
    return frame(body, event=item.type, id=item.seq or None)

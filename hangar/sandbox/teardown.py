"""Teardown in the background: once a sandbox is marked dead nobody needs to wait
while its runtime is taken down (runsc takes a second, a wasm instance tens of
milliseconds), so ``kill`` returns at once and the work finishes here."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_pending: set[asyncio.Task[None]] = set()


def later(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def settle_teardowns() -> None:
    """Wait for background teardowns (tests and shutdown use it)."""
    while _pending:
        await asyncio.gather(*_pending, return_exceptions=True)

"""Output from a worker thread to an async ``OutputCallback``, in order, as it comes.

Backends that run a cell on a thread (monty's pool, the wasm guest) get their output
there, one print at a time; the callback lives on the event loop. The relay carries
each piece across and merges whatever queued up meanwhile, so a loop that prints
ten thousand lines costs a few callbacks, not ten thousand.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from hangar.sandbox.base import OutputCallback


class OutputRelay:
    def __init__(self, on_output: OutputCallback | None) -> None:
        self.on_output = on_output
        self._task: asyncio.Task[None] | None = None

    def __call__(self, stream: str, text: str) -> None:
        """Called on the worker thread."""
        if self._task is not None and text:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (stream, text))

    async def __aenter__(self) -> OutputRelay:
        if self.on_output is not None:
            self._queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.create_task(self._drain())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._task is None:
            return
        # Pieces the thread sent just before it ended are still on their way to the
        # queue (call_soon_threadsafe); one turn of the loop lands them before the end.
        await asyncio.sleep(0)
        self._queue.put_nowait(None)
        await self._task

    async def _drain(self) -> None:
        assert self.on_output is not None
        ended = False
        while not ended:
            pieces = [await self._queue.get()]
            while not self._queue.empty():
                pieces.append(self._queue.get_nowait())
            if pieces[-1] is None:
                ended = True
            merged: list[tuple[str, str]] = []
            for piece in pieces:
                if piece is None:
                    continue
                if merged and merged[-1][0] == piece[0]:
                    merged[-1] = (piece[0], merged[-1][1] + piece[1])
                else:
                    merged.append(piece)
            for stream, text in merged:
                await self.on_output(stream, text)

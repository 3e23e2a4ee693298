"""The ``monty`` backend: pydantic-monty, a Python subset in Rust, run by a pool of
worker processes. A cell costs well under a millisecond, so it fits pure
computation an agent does many times (arithmetic, parsing, data shaping); it has
no shell, no network, and no files but its workspace mount.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.errors import SandboxDeadError
from hangar.sandbox.base import Availability, ExecResult, ExecStatus, OutputCallback
from hangar.sandbox.relay import OutputRelay
from hangar.sandbox.teardown import deferred, run_deferred
from hangar.sandbox.workspace import HostWorkspaceSandbox
from hangar.spec.sandbox import SandboxTemplateSpec

GUEST_WORKSPACE = "/workspace"
FILE_ACCESS = re.compile(r"\b(open|os|pathlib|Path|eval|exec)\b")
MAX_WORKERS = 256
_STATUS_BY_EXCEPTION = {
    "OutputFull": ExecStatus.OUTPUT_TRUNCATED,
    "TimeoutError": ExecStatus.TIMEOUT,
    "MemoryError": ExecStatus.OOM,
    "RecursionError": ExecStatus.OOM,
    "PermissionError": ExecStatus.DENIED,
}

_pool: Any = None
_pool_lock = threading.Lock()


def pool() -> Any:
    """One worker pool per process, started on first use and stopped at exit."""
    global _pool
    with _pool_lock:
        if _pool is None:
            from pydantic_monty import Monty

            # Each live session holds a worker, so the pool must be as large as the
            # sandboxes we keep; a checkout that still finds none fails, never hangs.
            _pool = Monty(min_processes=1, max_processes=MAX_WORKERS, checkout_timeout=30)
            _pool.__enter__()
            atexit.register(_pool.__exit__, None, None, None)
        return _pool


class _OutputFull(Exception):
    """Raised from the print callback: it stops the feed, and the session survives."""


class _Capped:
    """Keeps at most ``limit`` bytes of output, then stops the code that prints."""

    def __init__(self, limit: int, forward: Callable[[str, str], None]) -> None:
        self.limit = limit
        self.forward = forward
        self.parts: list[tuple[str, str]] = []
        self.size = 0
        self.full = False

    def __call__(self, stream: str, text: str) -> None:
        room = self.limit - self.size
        data = text.encode()
        if len(data) > room:
            data = data[: max(room, 0)]
            self.full = True
        kept = data.decode(errors="ignore")
        self.parts.append((stream, kept))
        self.size += len(data)
        self.forward(stream, kept)
        if self.full:
            raise _OutputFull

    def text(self, stream: str) -> str:
        return "".join(t for s, t in self.parts if s == stream)


class MontySandbox(HostWorkspaceSandbox):
    def __init__(self, spec: SandboxTemplateSpec) -> None:
        super().__init__(spec, "monty")
        self.mount: Any = None
        self.killed = False

    @property
    def alive(self) -> bool:
        return not self.killed

    async def start(self) -> None:
        """Nothing to wait for: the pool's worker is checked out by the first call (in
        the same hop to the worker thread) or by ``warm_up``."""

    async def warm_up(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> Any:
        """The session's pool worker, checked out on first use (on a worker thread:
        a checkout may wait for a free worker)."""
        if self.session is not None:
            return self.session
        if self.killed:
            raise SandboxDeadError(f"sandbox {self.id} is not running", hint="start a new one")
        run_deferred()  # killed sessions first: their workers go back, and this reuses one
        limits = self.spec.limits
        session = pool().checkout(
            limits={
                "max_feed_duration_secs": limits.wall_seconds,
                "max_memory": limits.memory_mb * 1024 * 1024,
            }
        )
        session.__enter__()
        self.session = session
        return session

    def _mounted(self) -> Any:
        """The workspace, mounted into the guest (made on first need)."""
        if self.mount is None:
            from pydantic_monty import MountDir

            mount = MountDir(
                host_path=self.folder,
                virtual_path=GUEST_WORKSPACE,
                mode="read-write",
                write_bytes_limit=self.spec.limits.workspace_mb * 1024 * 1024,
            )
            mount.__enter__()
            self.mount = mount
        return self.mount

    def needs_files(self, code: str) -> bool:
        """Whether this cell may reach the workspace. Monty code reaches files only
        through ``open``, ``os`` or ``pathlib`` (no ``__import__``, ``getattr`` on
        builtins or ``globals``), or through code built at run time (``eval``,
        ``exec``): a cell that names none of them gets no mount, and pure
        computation, monty's purpose, pays for no folder. Once mounted, always: names
        bound in one cell stay for the next."""
        return self.has_workspace or FILE_ACCESS.search(code) is not None

    def _feed(self, code: str, out: _Capped, files: bool) -> Any:
        session = self._open()
        if not files:
            return session.feed_run(code, print_callback=out)
        return session.feed_run(
            code, print_callback=out, mount=self._mounted(), cwd=GUEST_WORKSPACE
        )

    async def run_python(
        self, code: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        from pydantic_monty import MontyCrashedError, MontyError, MontyRuntimeError

        if self.killed:
            raise SandboxDeadError(f"sandbox {self.id} is not running", hint="start a new one")
        limit = self.spec.limits.output_bytes
        relay = OutputRelay(on_output)
        out = _Capped(limit, relay)
        reaches_files = self.needs_files(code)
        before = self.workspace.snapshot() if self.has_workspace else {}
        started = time.perf_counter()
        status, value, error, trace = ExecStatus.OK, None, None, None
        async with self._lock, relay:
            try:
                result = await asyncio.to_thread(self._feed, code, out, reaches_files)
                value = None if result is None else repr(result)
            except MontyRuntimeError as exc:
                name = "OutputFull" if out.full else type(exc.exception()).__name__
                status = _STATUS_BY_EXCEPTION.get(name, ExecStatus.ERROR)
                error = exc.display("type-msg")
                trace = exc.display("traceback")
                if status in (ExecStatus.TIMEOUT, ExecStatus.OOM):
                    # Monty promises nothing of a heap stopped mid-operation.
                    await self.kill()
                    error += "; the session is over"
            except MontyCrashedError as exc:
                await self.kill()
                status, error = ExecStatus.KILLED, f"the worker died: {exc}"
            except MontyError as exc:
                status, error = ExecStatus.ERROR, str(exc)
        stdout, stderr = out.text("stdout"), out.text("stderr")
        after = self.workspace.snapshot() if self.has_workspace else {}
        files = tuple(sorted(p for p, stamp in after.items() if before.get(p) != stamp))
        return ExecResult(
            status=status,
            stdout=stdout,
            stderr=stderr,
            value=value,
            error=error,
            traceback=trace,
            files=files,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    async def run_shell(
        self, command: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        return ExecResult(ExecStatus.DENIED, error="the monty backend runs a Python subset only")

    async def kill(self) -> None:
        """Returns at once; the worker goes back to the pool in the background."""
        self.killed = True
        deferred(self._close)

    def _close(self) -> None:
        session, mount = self.session, self.mount
        self.session = self.mount = None
        for item in (mount, session):
            if item is not None:
                with contextlib.suppress(Exception):
                    item.__exit__(None, None, None)
        self.remove_workspace()


class MontyBackend:
    name = "monty"

    def availability(self) -> Availability:
        try:
            import pydantic_monty  # noqa: F401
        except ImportError:
            return Availability(
                self.name,
                False,
                "pydantic-monty is not installed",
                hint="pip install pydantic-monty",
            )
        return Availability(self.name, True, "Python subset in worker processes; microsecond cells")

    async def start(
        self, spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY
    ) -> MontySandbox:
        sandbox = MontySandbox(spec)
        await sandbox.start()
        return sandbox

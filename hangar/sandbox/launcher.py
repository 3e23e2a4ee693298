"""Sandbox processes on the host, and the launchers parked ahead of need.

Every process sandbox lives in a cgroup of its own. Moving a process into a cgroup
waits for an RCU grace period in the kernel (cgroup v1, and v2 without
``favordynmods``): 7 to 15 ms here, a third of a bwrap sandbox's whole start. A
process that is *born* in the cgroup pays nothing, but Python cannot spawn into one
(``clone3`` with ``CLONE_INTO_CGROUP`` is not exposed), so Hangar keeps a couple of
launchers parked: each is a bwrap already moved into its own fresh cgroup and blocked
reading its options (``--args``) from a pipe. Starting a sandbox hands one the
template's options (workspace size, environment, egress socket) and sets the
cgroup's limits; what runs is then born inside. A parked launcher holds no
template's settings and no state, so a cold start stays a cold start; when none is
parked (a burst), a sandbox spawns and is released at once, the same way.

Processes are plain ``subprocess.Popen`` objects with raw pipes, bound to no event
loop until a sandbox adopts them.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import subprocess
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO

from hangar.sandbox.cgroups import Cgroup, detect

REPLY_FD = "{reply_fd}"
"""Placeholder in argv or options for the descriptor the kernel answers on."""
OPTIONS_FD = "{options_fd}"
"""Placeholder in argv for the descriptor a parked process reads its options from."""
PARKED_PIDS = 16
PARKED_MEMORY = 256 * 1024 * 1024
"""A parked launcher's limits, until it becomes a sandbox and takes its template's."""


class Spawned:
    """One sandbox process: its cgroup, the pipe it reads requests from, the one it
    answers on, its standard error, and while it is parked, its options pipe."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        pids: int = PARKED_PIDS,
        memory_bytes: int = PARKED_MEMORY,
        pass_fds: Sequence[int] = (),
        replies_on_stdout: bool = False,
    ) -> None:
        self.id = f"sbx_{uuid.uuid4().hex[:20]}"
        layout = detect()
        self.cgroup = (
            Cgroup(layout, self.id, pids=pids, memory_bytes=memory_bytes) if layout else None
        )
        ours: list[int] = []  # our ends of the pipes
        theirs: list[int] = []  # the child's ends, closed here once it has them
        self.options_fd: int | None = None
        command = list(argv)
        if any(OPTIONS_FD in arg for arg in command):
            read_end, self.options_fd = os.pipe()
            ours.append(self.options_fd)
            theirs.append(read_end)
            command = [arg.replace(OPTIONS_FD, str(read_end)) for arg in command]
        self.reply_fd = "stdout"
        reply_read: int | None = None
        if not replies_on_stdout:
            reply_read, reply_write = os.pipe()
            ours.append(reply_read)
            theirs.append(reply_write)
            self.reply_fd = str(reply_write)
        command = [arg.replace(REPLY_FD, self.reply_fd) for arg in command]
        if self.cgroup is not None:
            command = self.cgroup.wrap(command)
        try:
            self.popen = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if replies_on_stdout else subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(*theirs, *pass_fds),
                start_new_session=True,
                bufsize=0,
            )
        except BaseException:
            for fd in ours:
                os.close(fd)
            if self.cgroup is not None:
                self.cgroup.remove()
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        replies = self.popen.stdout if reply_read is None else os.fdopen(reply_read, "rb", 0)
        assert replies is not None
        self.replies: IO[bytes] = replies
        """Where the kernel's answers arrive."""

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def parked(self) -> bool:
        return self.options_fd is not None

    def release(
        self, options: Sequence[str], *, pids: int, memory_bytes: int, cpus: float | None = None
    ) -> None:
        """Give the template's limits and options: the launcher becomes a sandbox."""
        if self.cgroup is not None:
            self.cgroup.set_limits(pids=pids, memory_bytes=memory_bytes, cpus=cpus)
        if self.options_fd is None:
            return
        data = b"".join(arg.replace(REPLY_FD, self.reply_fd).encode() + b"\0" for arg in options)
        fd, self.options_fd = self.options_fd, None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def stderr(self, limit: int = 4000) -> str:
        """What the process wrote to standard error before it died."""
        stream = self.popen.stderr
        if stream is None:
            return ""
        os.set_blocking(stream.fileno(), False)
        with contextlib.suppress(OSError, TypeError):
            return (stream.read(limit) or b"").decode(errors="replace").strip()
        return ""

    def kill(self) -> None:
        """Signal the whole process group; ``reap`` finishes the job."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()
        if self.options_fd is not None:
            os.close(self.options_fd)
            self.options_fd = None

    def reap(self, timeout: float = 5.0) -> None:
        """Wait for the killed process, close our pipes, and remove the cgroup with
        anything still in it (blocking: run it off the event loop)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout)
        for stream in (self.popen.stdin, self.replies, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None


class Parking:
    """Keeps ``size`` launchers parked for one backend, refilled shortly after each
    is taken (so the refill does not compete with the start that took one)."""

    def __init__(self, spawn: Callable[[], Spawned], size: int = 2, delay: float = 0.005) -> None:
        self.spawn = spawn
        self.size = size
        self.delay = delay
        self.parked: deque[Spawned] = deque()
        self._refill_pending = False
        atexit.register(self.close)

    def take(self) -> Spawned | None:
        launcher = None
        while self.parked and launcher is None:
            candidate = self.parked.popleft()
            if candidate.alive:
                launcher = candidate
            else:
                candidate.kill()
                candidate.reap(0)
        self._refill_soon()
        return launcher

    def _refill_soon(self) -> None:
        if self._refill_pending or len(self.parked) >= self.size:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._refill_pending = True
        loop.call_later(self.delay, self._park_one, loop)

    def _park_one(self, loop: asyncio.AbstractEventLoop) -> None:
        """Spawn on a worker thread (a spawn is a millisecond or two the event loop
        need not wait), then come back for the next."""
        future = loop.run_in_executor(None, self._spawn_parked)

        def done(_: object) -> None:
            self._refill_pending = False
            self._refill_soon()

        future.add_done_callback(done)

    def _spawn_parked(self) -> None:
        # Appended on the worker thread (deque.append is atomic), so a launcher is
        # tracked, and closed at exit, even if the event loop ends meanwhile.
        with contextlib.suppress(OSError):
            self.parked.append(self.spawn())

    def close(self) -> None:
        while self.parked:
            launcher = self.parked.popleft()
            launcher.kill()
            launcher.reap(1)

"""A sandbox that is a process tree on this host (bwrap, gVisor) running the kernel.

The host talks to the kernel over two pipes: requests on its standard input,
answers on a descriptor of their own (``HANGAR_REPLY_FD``). Answers are untrusted
data (the user's code runs in that process and could write to that descriptor),
so they are only parsed, never acted on. A call that overruns its time by a margin
kills the whole sandbox.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Sequence
from typing import Any

from hangar.errors import SandboxDeadError, SandboxFileError
from hangar.sandbox.base import ExecResult, ExecStatus, FileInfo, OutputCallback
from hangar.sandbox.cgroups import Cgroup, detect
from hangar.sandbox.egress import EgressProxy, proxy_env
from hangar.spec.sandbox import SandboxTemplateSpec

REPLY_FD = "{reply_fd}"
"""Placeholder in a backend's argv for the descriptor the kernel answers on."""

KERNEL_GRACE_SECONDS = 3.0
"""Beyond a call's own timeout, how long the kernel may take to answer before the
sandbox is considered hung and killed."""


def kernel_env(spec: SandboxTemplateSpec, workspace: str) -> dict[str, str]:
    """The whole environment the kernel sees: nothing from the host leaks in."""
    limits = spec.limits
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workspace,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
        "HANGAR_WORKSPACE": workspace,
        "HANGAR_OUTPUT_BYTES": str(limits.output_bytes),
        "HANGAR_MEMORY_BYTES": str(limits.memory_mb * 1024 * 1024),
        "HANGAR_FILE_BYTES": str(limits.workspace_mb * 1024 * 1024),
        "HANGAR_PROCESSES": str(limits.processes),
        "HANGAR_REPLY_FD": REPLY_FD,
        **(proxy_env() if spec.network.mode == "allowlist" else {}),
    }


async def start_egress(spec: SandboxTemplateSpec, label: str) -> EgressProxy | None:
    """The template's egress proxy, if its network mode needs one."""
    if spec.network.mode != "allowlist":
        return None
    return await EgressProxy(list(spec.network.allow_hosts), label).start()


class ProcessSandbox:
    def __init__(
        self,
        spec: SandboxTemplateSpec,
        argv: Sequence[str],
        backend: str,
        *,
        pass_fds: Sequence[int] = (),
        replies_on_stdout: bool = False,
        host_pids: int | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.egress = egress
        """The sandbox's own egress proxy (network mode ``allowlist``), closed with it."""
        self.host_pids = host_pids
        """Host tasks the sandbox may have; defaults to the template's process limit."""
        self.spec = spec
        self.pass_fds = tuple(pass_fds)
        self.replies_on_stdout = replies_on_stdout
        self.argv = list(argv)
        self.backend = backend
        self._id = f"sbx_{uuid.uuid4().hex[:20]}"
        self.proc: asyncio.subprocess.Process | None = None
        self.cgroup: Cgroup | None = None
        self._replies: asyncio.StreamReader | None = None
        self._lock = asyncio.Lock()
        self._counter = 0
        self.started_at = time.monotonic()
        self.last_used = self.started_at
        self.killed = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def alive(self) -> bool:
        return not self.killed and self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        layout = detect()
        if layout is not None:
            self.cgroup = Cgroup(
                layout,
                self._id,
                pids=self.host_pids or self.spec.limits.processes,
                memory_bytes=self.spec.limits.memory_mb * 1024 * 1024 * 2,
            )
        cgroup = self.cgroup
        if self.replies_on_stdout:
            await self._spawn_stdio(cgroup)
        else:
            await self._spawn_with_reply_pipe(cgroup)
        assert self.proc is not None and self._replies is not None
        try:
            async with asyncio.timeout(30):
                line = await self._replies.readline()
        except TimeoutError:
            line = b""
        if not line:
            stderr = b""
            if self.proc.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        stderr = await self.proc.stderr.read(4000)
            await self.kill()
            raise SandboxDeadError(
                f"the {self.backend} sandbox did not start: "
                f"{stderr.decode(errors='replace').strip()}",
                hint="run `hangar sandbox doctor` to see what this host supports",
            )

    def _command(self, cgroup: Cgroup | None, reply_fd: str) -> list[str]:
        argv = [arg.replace(REPLY_FD, reply_fd) for arg in self.argv]
        return cgroup.wrap(argv) if cgroup is not None else argv

    async def _spawn_stdio(self, cgroup: Cgroup | None) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self._command(cgroup, "stdout"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=self.pass_fds,
            start_new_session=True,
            limit=64 * 1024 * 1024,
        )
        self._replies = self.proc.stdout

    async def _spawn_with_reply_pipe(self, cgroup: Cgroup | None) -> None:
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, True)

        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self._command(cgroup, str(write_fd)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd, *self.pass_fds),
                start_new_session=True,
            )
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
        )
        self._replies = reader

    async def _call(
        self,
        request: dict[str, Any],
        timeout: float,
        on_output: OutputCallback | None = None,
    ) -> dict[str, Any]:
        if not self.alive or self.proc is None or self.proc.stdin is None or self._replies is None:
            raise SandboxDeadError(f"sandbox {self.id} is not running", hint="start a new one")
        async with self._lock:
            self._counter += 1
            request["id"] = self._counter
            if on_output is not None:
                request["stream"] = True
            self.last_used = time.monotonic()
            try:
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                await self.proc.stdin.drain()
                async with asyncio.timeout(timeout + KERNEL_GRACE_SECONDS):
                    while True:
                        line = await self._replies.readline()
                        if not line:
                            raise ConnectionResetError
                        reply = json.loads(line)
                        if not isinstance(reply, dict) or reply.get("id") != self._counter:
                            continue
                        if reply.get("partial") is True:
                            if on_output is not None:
                                await on_output(str(reply.get("stream")), str(reply.get("text")))
                            continue
                        return reply
            except TimeoutError:
                await self.kill()
                return {
                    "status": "timeout",
                    "error": f"the sandbox did not answer in {timeout} s and was killed",
                }
            except (ConnectionResetError, BrokenPipeError, json.JSONDecodeError):
                oom = self.cgroup is not None and self.cgroup.oom_killed()
                await self.kill()
                if oom:
                    return {
                        "status": "oom",
                        "error": "the sandbox ran out of memory and was killed",
                    }
                return {"status": "killed", "error": "the sandbox died during the call"}
            finally:
                self.last_used = time.monotonic()

    async def _contain(self, reply: dict[str, Any]) -> dict[str, Any]:
        """A sandbox that reached its process limit is running a fork bomb: its strays
        would burn CPU forever, so the whole sandbox goes."""
        if reply.get("kill") is True:
            await self.kill()
            return reply
        if self.cgroup is not None and self.cgroup.hit_process_limit():
            await self.kill()
            return {
                **reply,
                "status": "denied",
                "error": f"the sandbox reached its limit of {self.spec.limits.processes} "
                "processes and was killed",
            }
        return reply

    def _result(self, reply: dict[str, Any], started: float) -> ExecResult:
        try:
            status = ExecStatus(str(reply.get("status")))
        except ValueError:
            status = ExecStatus.ERROR
        files = reply.get("files") or []
        return ExecResult(
            status=status,
            stdout=str(reply.get("stdout") or ""),
            stderr=str(reply.get("stderr") or ""),
            value=reply.get("value") if isinstance(reply.get("value"), str) else None,
            error=reply.get("error") if isinstance(reply.get("error"), str) else None,
            traceback=reply.get("traceback") if isinstance(reply.get("traceback"), str) else None,
            exit_code=reply.get("exit_code") if isinstance(reply.get("exit_code"), int) else None,
            files=tuple(str(f) for f in files if isinstance(f, str)),
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    async def run_python(
        self, code: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        limits = self.spec.limits
        wall = timeout or limits.wall_seconds
        started = time.perf_counter()
        reply = await self._call(
            {"op": "exec", "code": code, "timeout": wall, "cpu": limits.cpu_seconds},
            wall,
            on_output,
        )
        return self._result(await self._contain(reply), started)

    async def run_shell(
        self, command: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        wall = timeout or self.spec.limits.wall_seconds
        started = time.perf_counter()
        reply = await self._call({"op": "shell", "cmd": command, "timeout": wall}, wall, on_output)
        return self._result(await self._contain(reply), started)

    async def _file_op(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = await self._call(request, 30)
        if reply.get("status") != "ok":
            raise SandboxFileError(
                str(reply.get("error") or reply.get("status")),
                details={"status": reply.get("status")},
            )
        return reply

    async def write_file(self, path: str, data: bytes) -> FileInfo:
        reply = await self._file_op(
            {"op": "write", "path": path, "data": base64.b64encode(data).decode()}
        )
        return FileInfo(str(reply["path"]), int(reply["size"]))

    async def read_file(self, path: str) -> bytes:
        reply = await self._file_op({"op": "read", "path": path})
        return base64.b64decode(reply["data"])

    async def list_files(self) -> list[FileInfo]:
        reply = await self._file_op({"op": "list"})
        return [FileInfo(str(p), int(s)) for p, s in reply["files"]]

    async def kill(self) -> None:
        self.killed = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None
        if self.egress is not None:
            await self.egress.close()
            self.egress = None

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
import subprocess
import time
import uuid
from collections.abc import Sequence
from typing import Any

from hangar.egress import AddressPolicy
from hangar.errors import SandboxDeadError, SandboxFileError
from hangar.sandbox.base import ExecResult, ExecStatus, FileInfo, OutputCallback
from hangar.sandbox.cgroups import Cgroup
from hangar.sandbox.egress import EgressProxy, proxy_env
from hangar.sandbox.launcher import REPLY_FD, Spawned
from hangar.sandbox.teardown import later_blocking
from hangar.spec.sandbox import SandboxTemplateSpec

KERNEL_GRACE_SECONDS = 3.0
"""Beyond a call's own timeout, how long the kernel may take to answer before the
sandbox is considered hung and killed."""
CPU_GRACE_SECONDS = 1.0
"""Beyond a call's CPU limit, how much more CPU its sandbox may burn before the host
kills it: the kernel inside interrupts a cell at the limit, but code can ignore that
signal; the host's count (the cgroup's) it cannot."""
CPU_WATCH_SECONDS = 0.1


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
        "HANGAR_BACKGROUND": spec.background,
        "HANGAR_REPLY_FD": REPLY_FD,
        **(proxy_env() if spec.network.mode == "allowlist" else {}),
    }


async def start_egress(
    spec: SandboxTemplateSpec, label: str, policy: AddressPolicy
) -> EgressProxy | None:
    """The template's egress proxy, if its network mode needs one."""
    if spec.network.mode != "allowlist":
        return None
    return await EgressProxy(list(spec.network.allow_hosts), policy, label).start()


class ProcessSandbox:
    def __init__(
        self,
        spec: SandboxTemplateSpec,
        backend: str,
        *,
        host_pids: int | None = None,
        egress: EgressProxy | None = None,
    ) -> None:
        self.host_pids = host_pids
        """Host tasks the sandbox may have; defaults to the template's process limit."""
        self.egress = egress
        """The sandbox's own egress proxy (network mode ``allowlist``), closed with it."""
        self.spec = spec
        self.backend = backend
        self._id = f"sbx_{uuid.uuid4().hex[:20]}"
        self.process: Spawned | None = None
        self.cgroup: Cgroup | None = None
        self._replies: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._transports: list[asyncio.BaseTransport] = []
        self._lock = asyncio.Lock()
        self._counter = 0
        self.started_at = time.monotonic()
        self.last_used = self.started_at
        self.killed = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.process is None else self.process.popen

    @property
    def alive(self) -> bool:
        return not self.killed and self.process is not None and self.process.alive

    async def start(self, process: Spawned, options: Sequence[str] = ()) -> None:
        """Adopt ``process`` (parked or just spawned), give it the template's options
        and limits, and wait for the kernel to say it is ready."""
        self.process, self.cgroup = process, process.cgroup
        limits = self.spec.limits
        loop = asyncio.get_running_loop()
        try:
            process.release(
                options,
                pids=self.host_pids or limits.processes,
                memory_bytes=limits.memory_mb * 1024 * 1024 * 2,
                cpus=limits.cpus,
            )
            reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), process.replies
            )
            self._transports.append(transport)
            self._replies = reader
            assert process.popen.stdin is not None
            write_transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, process.popen.stdin
            )
            self._transports.append(write_transport)
            self._writer = asyncio.StreamWriter(write_transport, protocol, None, loop)
        except OSError:
            line = b""
        else:
            try:
                async with asyncio.timeout(30):
                    line = await reader.readline()
            except TimeoutError:
                line = b""
        if not line:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.to_thread(process.popen.wait, 1)
            stderr = process.stderr()
            await self.kill()
            raise SandboxDeadError(
                f"the {self.backend} sandbox did not start: {stderr}",
                hint="run `hangar sandbox doctor` to see what this host supports",
            )

    async def _call(
        self,
        request: dict[str, Any],
        timeout: float,
        on_output: OutputCallback | None = None,
        cpu: float | None = None,
    ) -> dict[str, Any]:
        if not self.alive or self._writer is None or self._replies is None:
            raise SandboxDeadError(f"sandbox {self.id} is not running", hint="start a new one")
        async with self._lock:
            self._counter += 1
            request["id"] = self._counter
            if on_output is not None:
                request["stream"] = True
            self.last_used = time.monotonic()
            watch = self._watch_cpu(cpu) if cpu else None
            try:
                self._writer.write(json.dumps(request).encode() + b"\n")
                await self._writer.drain()
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
                over_cpu = watch is not None and watch.done() and watch.result()
                await self.kill()
                if over_cpu:
                    return {
                        "status": "timeout",
                        "error": f"the call used more than {cpu:g} s of CPU; the sandbox was "
                        "killed",
                    }
                if oom:
                    return {
                        "status": "oom",
                        "error": "the sandbox ran out of memory and was killed",
                    }
                return {"status": "killed", "error": "the sandbox died during the call"}
            finally:
                if watch is not None:
                    watch.cancel()
                self.last_used = time.monotonic()

    def _watch_cpu(self, cpu: float) -> asyncio.Task[bool] | None:
        """A task that kills the sandbox once the call has used ``cpu`` seconds of CPU
        and the grace (true if it did); None where the host cannot count CPU."""
        cgroup = self.cgroup
        start = cgroup.cpu_seconds() if cgroup is not None else None
        if cgroup is None or start is None:
            return None

        async def watch() -> bool:
            while True:
                await asyncio.sleep(CPU_WATCH_SECONDS)
                used = cgroup.cpu_seconds()
                if used is not None and used - start > cpu + CPU_GRACE_SECONDS:
                    if self.process is not None:
                        self.process.kill()  # the call's read then ends, and reports it
                    return True

        return asyncio.get_running_loop().create_task(watch())

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
            cpu=limits.cpu_seconds,
        )
        return self._result(await self._contain(reply), started)

    async def run_shell(
        self, command: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        limits = self.spec.limits
        wall = timeout or limits.wall_seconds
        started = time.perf_counter()
        reply = await self._call(
            {"op": "shell", "cmd": command, "timeout": wall, "cpu": limits.cpu_seconds},
            wall,
            on_output,
            cpu=limits.cpu_seconds,
        )
        return self._result(await self._contain(reply), started)

    async def warm_up(self) -> None:
        await self._call({"op": "warm"}, 30)

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
        process, self.process = self.process, None
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        if process is not None:
            # Dead at once (SIGKILL to the group); the reap and the cgroup's removal,
            # which waits for the kernel to let go of it, finish in the background.
            process.kill()
            later_blocking(process.reap)
        self.cgroup = None
        if self.egress is not None:
            await self.egress.close()
            self.egress = None

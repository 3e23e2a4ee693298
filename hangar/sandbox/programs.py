"""Programs a namespace runs over stdio (the MCP servers it declares), each started in a
sandbox of a template instead of on the host.

The program sees what every bwrap sandbox sees (the host's read-only ``/usr``, a
tmpfs workspace, the template's network policy through the egress proxy, nothing of
the host's files, processes or environment), within the template's limits and the
seccomp filter; only its stdin and stdout reach Hangar. Hangar's MCP client starts
and stops the process itself; ``SandboxedProgram.close`` clears what is left (the
cgroup, the egress proxy, the filter's file).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hangar.egress import AddressPolicy
from hangar.errors import BackendUnavailableError
from hangar.sandbox import seccomp
from hangar.sandbox.bwrap import program_argv
from hangar.sandbox.cgroups import Cgroup, detect
from hangar.sandbox.egress import EgressProxy
from hangar.sandbox.process import start_egress
from hangar.sandbox.registry import backend
from hangar.spec.sandbox import SandboxTemplateSpec

PROGRAM_BACKENDS = ("bwrap",)
SECCOMP_FD = 9
"""Where the filter is opened for bwrap: the MCP SDK starts the process and passes no
descriptor of ours, so a shell opens the filter's file there first."""


@dataclass
class SandboxedProgram:
    """A command line that starts the program in its sandbox, and what to clear after."""

    argv: list[str]
    cgroup: Cgroup | None = None
    egress: EgressProxy | None = None
    files: list[Path] = field(default_factory=list)

    async def close(self) -> None:
        if self.cgroup is not None:
            self.cgroup.remove()  # kills whatever is left inside
            self.cgroup = None
        if self.egress is not None:
            await self.egress.close()
            self.egress = None
        for path in self.files:
            with contextlib.suppress(OSError):
                path.unlink()
        self.files = []


async def sandboxed_program(
    spec: SandboxTemplateSpec,
    command: str,
    args: list[str],
    env: dict[str, str],
    cwd: str | None,
    policy: AddressPolicy,
    label: str,
) -> SandboxedProgram:
    """The command line for ``command`` in a sandbox of ``spec``."""
    if spec.backend not in PROGRAM_BACKENDS:
        raise BackendUnavailableError(
            f"programs on stdio (MCP servers) run in {' or '.join(PROGRAM_BACKENDS)} "
            f"sandboxes; this template's backend is {spec.backend!r}",
            hint="name a SandboxTemplate with backend bwrap in the MCPServer's stdio.sandbox",
        )
    await backend(spec.backend)  # raises if bwrap does not work on this host
    program = SandboxedProgram(argv=[])
    try:
        program.egress = await start_egress(spec, label, policy)
        seccomp_fd = None
        if seccomp.supported():
            fd, name = tempfile.mkstemp(prefix="hangar-seccomp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(seccomp.program())
            program.files.append(Path(name))
            seccomp_fd = SECCOMP_FD
        argv = program_argv(spec, command, args, env, cwd, program.egress, seccomp_fd)
        if seccomp_fd is not None:
            # The filter's file is opened by a shell as root before the privileges
            # drop, then read by bwrap from the inherited descriptor.
            argv = ["/bin/sh", "-c", f'exec {SECCOMP_FD}<"$0" && exec "$@"', name, *argv]
        layout = detect()
        if layout is not None:
            limits = spec.limits
            program.cgroup = Cgroup(
                layout,
                f"prg_{uuid.uuid4().hex[:20]}",
                pids=limits.processes,
                memory_bytes=limits.memory_mb * 1024 * 1024 * 2,
                cpus=limits.cpus,
            )
            argv = program.cgroup.wrap(argv)
        program.argv = argv
        return program
    except BaseException:
        await program.close()
        raise

"""The ``gvisor`` backend: the kernel runs under runsc, gVisor's user-space kernel,
so the sandboxed code never makes a system call to the host kernel directly.

Each sandbox is an OCI bundle made here: an empty read-only root, the host's
``/usr`` bound read-only, a size-limited tmpfs workspace, no network, a process
limit, and no host environment. gVisor only offers the kernel stdio, so answers
come back on standard output (see the kernel).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.sandbox import seccomp
from hangar.sandbox.base import Availability
from hangar.sandbox.bwrap import HOST_ETC, KERNEL_IN_SANDBOX, PYTHON, SANDBOX_UID, kernel_mounts
from hangar.sandbox.cgroups import detect
from hangar.sandbox.egress import SOCKET_IN_SANDBOX, EgressProxy
from hangar.sandbox.launcher import Spawned
from hangar.sandbox.process import ProcessSandbox, kernel_env, start_egress
from hangar.sandbox.teardown import later
from hangar.spec.sandbox import SandboxTemplateSpec

WORKSPACE = "/workspace"
HOST_TASKS = 512


def _bind(source: str, destination: str) -> dict[str, Any]:
    return {
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": ["rbind", "ro"],
    }


def oci_config(spec: SandboxTemplateSpec, egress: EgressProxy | None = None) -> dict[str, Any]:
    limits = spec.limits
    env = {**kernel_env(spec, WORKSPACE), "HANGAR_REPLY_FD": "stdout"}
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        _bind("/usr", "/usr"),
        _bind("/usr/lib", "/lib"),
        _bind("/usr/bin", "/bin"),
        *(_bind(copy, inside) for copy, inside in kernel_mounts()),
        {
            "destination": WORKSPACE,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": [f"size={limits.workspace_mb}m", "mode=0777"],
        },
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["size=64m", "mode=1777"],
        },
    ]
    if Path("/usr/lib64").exists():
        mounts.insert(4, _bind("/usr/lib64", "/lib64"))
    mounts += [_bind(path, path) for path in HOST_ETC if Path(path).exists()]
    if egress is not None:
        mounts.append(_bind(str(egress.socket_path), SOCKET_IN_SANDBOX))
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": SANDBOX_UID, "gid": SANDBOX_UID},
            "args": [PYTHON, "-I", "-S", KERNEL_IN_SANDBOX],
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": WORKSPACE,
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted")},
            "rlimits": [
                {"type": "RLIMIT_NPROC", "hard": limits.processes, "soft": limits.processes},
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
            ],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            **({"seccomp": seccomp.oci_profile()} if seccomp.supported() else {}),
        },
    }


class GvisorSandbox(ProcessSandbox):
    def __init__(self, spec: SandboxTemplateSpec, egress: EgressProxy | None = None) -> None:
        self.bundle = Path(tempfile.mkdtemp(prefix="hangar-gvisor-"))
        (self.bundle / "rootfs").mkdir()
        (self.bundle / "config.json").write_text(json.dumps(oci_config(spec, egress)))
        self.state = self.bundle / "state"
        runsc = shutil.which("runsc") or "runsc"
        self.base = [
            runsc,
            "--rootless",
            "--network=none",
            "--ignore-cgroups",
            "--oci-seccomp",
            f"--root={self.state}",
        ]
        if egress is not None:
            # Only to connect to the egress proxy's socket, the one host socket bound in.
            self.base.append("--host-uds=open")
        # gVisor's own threads count as host tasks; the guest's processes are bounded
        # inside the sandbox by RLIMIT_NPROC instead.
        super().__init__(spec, "gvisor", host_pids=HOST_TASKS, egress=egress)
        self.argv = [*self.base, "run", "--bundle", str(self.bundle), self.id]

    async def kill(self) -> None:
        # runsc takes a second or more to tear a sandbox down; nobody needs to wait
        # for it once the sandbox is marked dead.
        self.killed = True
        later(self._teardown())

    async def _teardown(self) -> None:
        await super().kill()
        with contextlib.suppress(OSError):
            proc = await asyncio.create_subprocess_exec(
                *self.base,
                "delete",
                "-force",
                self.id,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(30):
                    await proc.wait()
        shutil.rmtree(self.bundle, ignore_errors=True)


class GvisorBackend:
    name = "gvisor"

    def availability(self) -> Availability:
        runsc = shutil.which("runsc")
        if runsc is None:
            return Availability(
                self.name, False, "runsc is not installed", hint="apt-get install runsc"
            )
        probe = subprocess.run(
            [runsc, "--rootless", "--network=none", "do", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            return Availability(
                self.name,
                False,
                f"runsc cannot start sandboxes here: {probe.stderr.strip()[-300:]}",
                hint="gVisor needs ptrace or KVM and user namespaces; use bwrap or wasm",
            )
        return Availability(
            self.name,
            True,
            "gVisor user-space kernel, read-only root, tmpfs workspace",
            features={"cgroups": detect() is not None, "network_allowlist": True},
        )

    async def start(
        self, spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY
    ) -> GvisorSandbox:
        sandbox = GvisorSandbox(spec, await start_egress(spec, self.name, policy))
        try:
            process = Spawned(sandbox.argv, replies_on_stdout=True)
        except BaseException:
            await sandbox.kill()
            raise
        await sandbox.start(process)
        return sandbox

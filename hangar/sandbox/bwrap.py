"""The ``bwrap`` backend: Linux namespaces (user, pid, net, mount, ipc, uts, cgroup),
a read-only root of the host's ``/usr``, a size-limited tmpfs workspace, a seccomp
deny-list, dropped capabilities, and a cgroup per sandbox.

The sandbox sees no host files but the read-only system (programs and libraries),
no host processes, no network, and no environment variable of the host.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from hangar.egress import PUBLIC_ONLY, AddressPolicy
from hangar.sandbox import seccomp
from hangar.sandbox.base import Availability
from hangar.sandbox.cgroups import detect
from hangar.sandbox.egress import SOCKET_IN_SANDBOX, EgressProxy
from hangar.sandbox.launcher import OPTIONS_FD, Parking, Spawned
from hangar.sandbox.process import ProcessSandbox, kernel_env, start_egress
from hangar.spec.sandbox import SandboxTemplateSpec

KERNEL_FILES = ("kernel.py", "kernel_processes.py")
"""The kernel's files, mounted read-only side by side under ``/.hangar`` (see
``kernel.load``)."""
KERNEL_IN_SANDBOX = "/.hangar/kernel.py"
WORKSPACE = "/workspace"
PYTHON = "/usr/bin/python3"
SANDBOX_UID = 1000
"""The user inside the sandbox; on the host it is ``nobody`` (see ``_drop_privileges``)."""
HOST_NOBODY = 65534
HOST_ETC = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime", "/etc/matplotlibrc")
"""The few files of the host's /etc that programs in /usr need, shared read-only."""


@functools.cache
def kernel_mounts() -> tuple[tuple[str, str], ...]:
    """The kernel's files as (copy on the host, path in the sandbox): copies that an
    unprivileged user can read, as the package may live under a folder only root can
    enter (a virtualenv in /root)."""
    folder = Path(tempfile.mkdtemp(prefix="hangar-kernel-"))
    atexit.register(shutil.rmtree, folder, True)
    folder.chmod(0o755)
    mounts = []
    for name in KERNEL_FILES:
        copy = folder / name
        copy.write_bytes(Path(__file__).with_name(name).read_bytes())
        copy.chmod(0o644)
        mounts.append((str(copy), f"/.hangar/{name}"))
    return tuple(mounts)


def _drop_privileges() -> list[str]:
    """As root, run bwrap as ``nobody``: the sandbox then holds no host privilege at all,
    even outside its user namespace."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return []
    return [
        setpriv,
        f"--reuid={HOST_NOBODY}",
        f"--regid={HOST_NOBODY}",
        "--clear-groups",
        "--inh-caps=-all",
    ]


def _seccomp_fd() -> int | None:
    if not seccomp.supported():
        return None
    with tempfile.TemporaryFile() as handle:
        handle.write(seccomp.program())
        handle.flush()
        handle.seek(0)
        fd = os.dup(handle.fileno())
    os.set_inheritable(fd, True)
    return fd


def _system_argv() -> list[str]:
    """Everything of a bwrap sandbox that no template changes, up to its options."""
    # fmt: off
    argv = [
        *_drop_privileges(),
        shutil.which("bwrap") or "bwrap",
        "--unshare-all",
        # No user namespace may be made inside (with the seccomp filter's clone check).
        "--unshare-user", "--disable-userns",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
    ]
    if Path("/usr/lib64").exists():
        argv += ["--symlink", "usr/lib64", "/lib64"]
    for optional in HOST_ETC:
        if Path(optional).exists():
            argv += ["--ro-bind", optional, optional]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", str(64 * 1024 * 1024), "--tmpfs", "/tmp",
        "--clearenv",
    ]
    # fmt: on
    for copy, inside in kernel_mounts():
        argv += ["--ro-bind", copy, inside]
    return argv


def _program(seccomp_fd: int | None, cwd: str, program: list[str]) -> list[str]:
    """The end of the command line: the root made read-only (only /workspace and /tmp
    take writes), the working folder, the filter, and what runs."""
    argv = ["--remount-ro", "/", "--chdir", cwd]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv + program


def launcher_argv(seccomp_fd: int | None) -> list[str]:
    """A bwrap sandbox whose template's part (``sandbox_options``) is read from a pipe
    at ``--args``, when the sandbox is wanted; until then bwrap waits there, parked
    (see ``launcher``)."""
    kernel = [PYTHON, "-I", "-S", KERNEL_IN_SANDBOX]
    return [*_system_argv(), "--args", OPTIONS_FD, *_program(seccomp_fd, WORKSPACE, kernel)]


def program_argv(
    spec: SandboxTemplateSpec,
    command: str,
    args: list[str],
    env: dict[str, str],
    cwd: str | None,
    egress: EgressProxy | None,
    seccomp_fd: int | None,
) -> list[str]:
    """A bwrap sandbox of the template running ``command`` as its program, on the
    caller's stdio (the kernel's program mode starts it after the egress relay)."""
    options = sandbox_options(spec, egress, env)
    kernel = [PYTHON, "-I", "-S", KERNEL_IN_SANDBOX, "--exec", command, *args]
    return [*_system_argv(), *options, *_program(seccomp_fd, cwd or WORKSPACE, kernel)]


def sandbox_options(
    spec: SandboxTemplateSpec,
    egress: EgressProxy | None = None,
    env: dict[str, str] | None = None,
) -> list[str]:
    """The template's part of the bwrap command line: workspace size, egress socket
    and the kernel's whole environment (and ``env``, a program's own, over it)."""
    options = ["--size", str(spec.limits.workspace_mb * 1024 * 1024), "--tmpfs", WORKSPACE]
    if egress is not None:
        options += ["--ro-bind", str(egress.socket_path), SOCKET_IN_SANDBOX]
    for key, value in {**kernel_env(spec, WORKSPACE), **(env or {})}.items():
        options += ["--setenv", key, value]
    return options


def spawn_launcher() -> Spawned:
    fd = _seccomp_fd()
    try:
        return Spawned(launcher_argv(fd), pass_fds=(fd,) if fd is not None else ())
    finally:
        if fd is not None:
            os.close(fd)


class BwrapBackend:
    name = "bwrap"

    def availability(self) -> Availability:
        binary = shutil.which("bwrap")
        if binary is None:
            return Availability(
                self.name, False, "bwrap is not installed", hint="apt-get install bubblewrap"
            )
        if not Path(PYTHON).exists():
            return Availability(
                self.name, False, f"{PYTHON} is missing", hint="apt-get install python3-minimal"
            )
        probe = subprocess.run(
            [
                *_drop_privileges(),
                binary,
                "--unshare-all",
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/bin",
                "/bin",
                "/bin/true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if probe.returncode != 0:
            return Availability(
                self.name,
                False,
                f"bwrap cannot create namespaces here: {probe.stderr.strip()}",
                hint="enable unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1) or use the wasm backend, "
                "which needs no privileges",
            )
        return Availability(
            self.name,
            True,
            "namespaces, read-only root, tmpfs workspace",
            features={
                "seccomp": seccomp.supported(),
                "cgroups": detect() is not None,
                "unprivileged": bool(_drop_privileges()) or os.geteuid() != 0,
                "network_allowlist": True,
            },
        )

    def __init__(self) -> None:
        self.parking = Parking(spawn_launcher)

    async def start(
        self, spec: SandboxTemplateSpec, policy: AddressPolicy = PUBLIC_ONLY
    ) -> ProcessSandbox:
        egress = await start_egress(spec, self.name, policy)
        sandbox = ProcessSandbox(spec, self.name, egress=egress)
        try:
            process = self.parking.take() or spawn_launcher()
        except BaseException:
            await sandbox.kill()
            raise
        await sandbox.start(process, sandbox_options(spec, egress))
        return sandbox

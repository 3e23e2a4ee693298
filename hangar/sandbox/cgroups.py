"""Per-sandbox cgroups: the host-side limits on processes (fork bombs), memory and
CPU, and the CPU time a sandbox has used.

Rlimits inside a sandbox cannot bound the number of processes when the host user
is root, so each process sandbox is placed in its own cgroup with ``pids.max``,
a memory limit and a CPU quota (``cpu.max``: how many cores it may use at once).
Its CPU time (``cpu.stat``, or ``cpuacct.usage`` on v1) is what the host reads to
stop a call that spends more than its template allows, whatever the code inside
does with its signals. Works with cgroup v2 (unified) and v1 (separate ``pids``,
``memory``, ``cpu`` and ``cpuacct`` hierarchies); where neither is writable,
sandboxes still run and ``hangar sandbox doctor`` says that fork bombs are only
bounded by time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "hangar"


CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class CgroupLayout:
    version: int
    pids: Path
    memory: Path | None
    cpu: Path | None = None
    cpuacct: Path | None = None


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def detect() -> CgroupLayout | None:
    """Where per-sandbox cgroups can be made on this host, or None."""
    controllers = ROOT / "cgroup.controllers"
    if controllers.exists() and "pids" in controllers.read_text().split() and _writable(ROOT):
        cpu = ROOT if "cpu" in controllers.read_text().split() else None
        return CgroupLayout(2, ROOT, ROOT, cpu, cpu)
    if _writable(ROOT / "pids"):

        def writable(name: str) -> Path | None:
            return ROOT / name if _writable(ROOT / name) else None

        return CgroupLayout(
            1, ROOT / "pids", writable("memory"), writable("cpu"), writable("cpuacct")
        )
    return None


class Cgroup:
    """One sandbox's cgroup; ``enter()`` is called in the child before it execs."""

    def __init__(
        self,
        layout: CgroupLayout,
        name: str,
        *,
        pids: int,
        memory_bytes: int,
        cpus: float | None = None,
    ) -> None:
        self.layout = layout
        self.dirs: list[Path] = []
        self.usage: Path | None = None
        """Where the cgroup's CPU time is read."""
        pid_dir = layout.pids / PARENT / name
        if layout.version == 2:
            parent = layout.pids / PARENT
            parent.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (layout.pids / "cgroup.subtree_control").write_text("+pids +memory +cpu")
            with contextlib.suppress(OSError):
                (parent / "cgroup.subtree_control").write_text("+pids +memory +cpu")
            pid_dir.mkdir(parents=True, exist_ok=True)
            self.dirs.append(pid_dir)
            self.usage = pid_dir / "cpu.stat"
        else:
            pid_dir.mkdir(parents=True, exist_ok=True)
            self.dirs.append(pid_dir)
            for root in (layout.memory, layout.cpu, layout.cpuacct):
                if root is not None:
                    (root / PARENT / name).mkdir(parents=True, exist_ok=True)
                    self.dirs.append(root / PARENT / name)
            if layout.cpuacct is not None:
                self.usage = layout.cpuacct / PARENT / name / "cpuacct.usage"
        self.set_limits(pids=pids, memory_bytes=memory_bytes, cpus=cpus)

    def set_limits(self, *, pids: int, memory_bytes: int, cpus: float | None = None) -> None:
        """Limits may change while the cgroup is in use: a parked launcher gets its
        template's when it becomes a sandbox. ``cpus``: cores at once (None: any)."""
        quota = "max" if cpus is None else str(max(1000, int(cpus * CPU_PERIOD_US)))
        for directory in self.dirs:
            if (directory / "pids.max").exists():
                (directory / "pids.max").write_text(str(pids))
            if self.layout.version == 2:
                with contextlib.suppress(OSError):
                    (directory / "memory.max").write_text(str(memory_bytes))
                    (directory / "memory.swap.max").write_text("0")
                with contextlib.suppress(OSError):
                    (directory / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            else:
                if (directory / "memory.limit_in_bytes").exists():
                    (directory / "memory.limit_in_bytes").write_text(str(memory_bytes))
                if (directory / "cpu.cfs_quota_us").exists():
                    (directory / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
                    (directory / "cpu.cfs_quota_us").write_text("-1" if cpus is None else quota)

    def cpu_seconds(self) -> float | None:
        """CPU time every process of the sandbox has used so far (None: unknown here)."""
        if self.usage is None:
            return None
        try:
            text = self.usage.read_text()
        except OSError:
            return None
        if self.layout.version == 1:
            return int(text.strip() or 0) / 1e9
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "usage_usec":
                return int(value) / 1e6
        return None

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run by a shell that first moves itself into this cgroup, so the
        program and everything it starts is inside from its first instruction.
        (A shell rather than a preexec hook: it lets the event loop spawn with vfork.)"""
        moves = "; ".join(f"echo $$ > {d / 'cgroup.procs'}" for d in self.dirs)
        return ["/bin/sh", "-c", f'{moves} && exec "$@"', "sandbox", *argv]

    def _counted(self, events_file: str, key: str) -> bool:
        """Whether any of our cgroups' ``events_file`` has a non-zero ``key`` line."""
        for directory in self.dirs:
            events = directory / events_file
            if events.exists():
                for line in events.read_text().splitlines():
                    name, _, value = line.partition(" ")
                    if name == key and int(value) > 0:
                        return True
        return False

    def hit_process_limit(self) -> bool:
        """Whether a fork was refused because the sandbox reached ``pids.max``."""
        return self._counted("pids.events", "max")

    def oom_killed(self) -> bool:
        if self._counted("memory.events", "oom_kill"):
            return True
        for directory in self.dirs:
            failcnt = directory / "memory.failcnt"
            if failcnt.exists() and int(failcnt.read_text() or 0) > 0:
                return True
        return False

    def remove(self, attempts: int = 250) -> None:
        """Kill what is left inside and remove the cgroup. A task that was killed
        while still moving in, or is still exiting, keeps the cgroup busy for a few
        milliseconds: removal retries (blocking: call it off the event loop)."""
        for directory in self.dirs:
            for _ in range(attempts):
                procs = directory / "cgroup.procs"
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError, ValueError):
                            os.kill(int(pid), 9)
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.002)
                else:
                    break

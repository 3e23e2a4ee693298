"""A workspace folder on the host, for backends whose guest reaches host files
through a grant (wasm): every path is checked so nothing outside it is touched."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hangar.errors import SandboxFileError
from hangar.sandbox.base import FileInfo
from hangar.spec.sandbox import SandboxTemplateSpec

MAX_READ = 64 * 1024 * 1024
SHARED_MEMORY = Path("/dev/shm")


@functools.cache
def scratch_root() -> str | None:
    """Where workspaces on the host live: in memory (/dev/shm) where there is one, as
    bwrap's and gVisor's tmpfs workspaces are. A workspace is scratch space, and on a
    disk its folder alone costs more to make and remove than a monty cell to run."""
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK | os.X_OK):
        return str(SHARED_MEMORY)
    return None


class HostWorkspace:
    def __init__(self, root: Path, limit_bytes: int) -> None:
        self.root = root.resolve()
        self.limit_bytes = limit_bytes

    def path(self, name: str) -> Path:
        """Resolve ``name`` inside the workspace; refuse ``..``, absolute paths that
        leave it, and symbolic links anywhere on the way."""
        if not name or "\x00" in name:
            raise SandboxFileError(
                "a file path must be a non-empty string", details={"status": "denied"}
            )
        relative = name.removeprefix("/workspace/") if name.startswith("/workspace/") else name
        if os.path.isabs(relative) or ".." in Path(relative).parts:
            raise SandboxFileError(
                f"{name!r} is outside the workspace", details={"status": "denied"}
            )
        target = self.root / relative
        current = self.root
        for part in Path(relative).parts:
            current = current / part
            if current.is_symlink():
                raise SandboxFileError(
                    f"{name!r} goes through a symbolic link", details={"status": "denied"}
                )
        if target.resolve() == self.root or self.root not in target.resolve().parents:
            raise SandboxFileError(
                f"{name!r} is outside the workspace", details={"status": "denied"}
            )
        return target

    def write(self, name: str, data: bytes) -> FileInfo:
        target = self.path(name)
        if self.size() + len(data) > self.limit_bytes:
            raise SandboxFileError("the workspace is full", details={"status": "denied"})
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return FileInfo(str(target.relative_to(self.root)), len(data))

    def read(self, name: str) -> bytes:
        target = self.path(name)
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise SandboxFileError(f"no such file: {name!r}") from None
        except OSError as exc:
            raise SandboxFileError(f"cannot read {name!r}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            return handle.read(MAX_READ)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every regular file (no links followed): its path, mtime and size. Taken
        around each cell to list the files it wrote, so it must cost microseconds."""
        found: dict[str, tuple[int, int]] = {}
        pending = [(str(self.root), "")]
        while pending:
            folder, prefix = pending.pop()
            try:
                entries = os.scandir(folder)
            except OSError:
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, f"{prefix}{entry.name}/"))
                    elif entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        found[prefix + entry.name] = (info.st_mtime_ns, info.st_size)
        return found

    def list(self) -> list[FileInfo]:
        return [FileInfo(path, size) for path, (_, size) in sorted(self.snapshot().items())]

    def size(self) -> int:
        return sum(f.size for f in self.list())

    def over_limit(self) -> bool:
        return self.size() > self.limit_bytes

    def remove(self, names: tuple[str, ...]) -> None:
        for name in names:
            try:
                self.path(name).unlink(missing_ok=True)
            except SandboxFileError:
                continue


class HostWorkspaceSandbox:
    """What the in-process backends (wasm, monty) share: an id, a host folder as the
    workspace with its file operations, one call at a time, and a guest ``session``
    whose presence means the sandbox is alive."""

    def __init__(self, spec: SandboxTemplateSpec, backend: str) -> None:
        self.spec = spec
        self.backend = backend
        self._id = f"sbx_{uuid.uuid4().hex[:20]}"
        self._workspace: HostWorkspace | None = None
        self.session: Any = None
        self._lock = asyncio.Lock()

    @property
    def workspace(self) -> HostWorkspace:
        """Made on first use: a sandbox that never touches a file never pays for one."""
        if self._workspace is None:
            folder = Path(tempfile.mkdtemp(prefix=f"hangar-{self.backend}-", dir=scratch_root()))
            self._workspace = HostWorkspace(folder, self.spec.limits.workspace_mb * 1024 * 1024)
        return self._workspace

    @property
    def folder(self) -> Path:
        return self.workspace.root

    @property
    def has_workspace(self) -> bool:
        return self._workspace is not None

    def remove_workspace(self) -> None:
        if self._workspace is not None:
            shutil.rmtree(self._workspace.root, ignore_errors=True)

    @property
    def id(self) -> str:
        return self._id

    @property
    def alive(self) -> bool:
        return self.session is not None

    async def warm_up(self) -> None:
        """Nothing to do: these guests are ready when started."""

    async def write_file(self, path: str, data: bytes) -> FileInfo:
        return self.workspace.write(path, data)

    async def read_file(self, path: str) -> bytes:
        return self.workspace.read(path)

    async def list_files(self) -> list[FileInfo]:
        return self.workspace.list()

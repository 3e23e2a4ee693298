"""Uploading a tar archive into a workspace, safely.

An archive is checked whole before anything is written: members with absolute
paths, ``..``, links of either kind, devices or FIFOs refuse the whole archive,
so a crafted archive can neither escape the workspace nor leave half its files.
Files are then written through the sandbox, which applies its own path checks
and size limit again.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import PurePosixPath

from hangar.errors import SandboxFileError
from hangar.sandbox.base import FileInfo, Sandbox

MAX_MEMBERS = 10_000


def _refuse(name: str, why: str) -> SandboxFileError:
    return SandboxFileError(
        f"archive member {name!r} {why}; nothing was extracted",
        details={"status": "denied", "member": name},
    )


def checked_members(data: bytes) -> list[tuple[str, bytes]]:
    """The archive's regular files as ``(path, content)``, or an error naming the
    first member that may not be extracted."""
    files: list[tuple[str, bytes]] = []
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
    except tarfile.TarError as exc:
        raise SandboxFileError(f"not a tar archive: {exc}") from None
    with archive:
        for count, member in enumerate(archive):
            if count >= MAX_MEMBERS:
                raise SandboxFileError(f"the archive has more than {MAX_MEMBERS} members")
            path = PurePosixPath(member.name)
            if path.is_absolute():
                raise _refuse(member.name, "has an absolute path")
            if ".." in path.parts:
                raise _refuse(member.name, "climbs out with '..'")
            if member.issym() or member.islnk():
                raise _refuse(member.name, "is a link")
            if member.isdir():
                continue
            if not member.isfile():
                raise _refuse(member.name, "is not a regular file")
            handle = archive.extractfile(member)
            files.append((str(path), handle.read() if handle else b""))
    return files


async def extract(sandbox: Sandbox, data: bytes, into: str = "") -> list[FileInfo]:
    written = []
    for path, content in checked_members(data):
        target = f"{into.rstrip('/')}/{path}" if into else path
        written.append(await sandbox.write_file(target, content))
    return written

"""Uploading an archive (tar, optionally compressed, or zip) into a workspace, safely.

An archive is checked whole before anything is written: members with absolute
paths, ``..``, links of either kind, devices or FIFOs refuse the whole archive,
so a crafted archive can neither escape the workspace nor leave half its files.
Files are then written through the sandbox, which applies its own path checks
and size limit again.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import PurePosixPath

from hangar.errors import SandboxFileError
from hangar.sandbox.base import FileInfo, Sandbox

MAX_MEMBERS = 10_000


def _refuse(name: str, why: str) -> SandboxFileError:
    return SandboxFileError(
        f"archive member {name!r} {why}; nothing was extracted",
        details={"status": "denied", "member": name},
    )


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise _refuse(name, "has an absolute path")
    if ".." in path.parts:
        raise _refuse(name, "climbs out with '..'")
    return path


def _zip_members(data: bytes) -> list[tuple[str, bytes]]:
    files: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise SandboxFileError(f"the archive has more than {MAX_MEMBERS} members")
        for info in infos:
            path = _check_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse(info.filename, "is a link")
            if info.is_dir():
                continue
            if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise _refuse(info.filename, "is not a regular file")
            files.append((str(path), archive.read(info)))
    return files


def checked_members(data: bytes) -> list[tuple[str, bytes]]:
    """The archive's regular files as ``(path, content)``, or an error naming the
    first member that may not be extracted."""
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            return _zip_members(data)
        except zipfile.BadZipFile as exc:
            raise SandboxFileError(f"not a valid zip archive: {exc}") from None
    files: list[tuple[str, bytes]] = []
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
    except tarfile.TarError as exc:
        raise SandboxFileError(f"not a tar or zip archive: {exc}") from None
    with archive:
        for count, member in enumerate(archive):
            if count >= MAX_MEMBERS:
                raise SandboxFileError(f"the archive has more than {MAX_MEMBERS} members")
            path = _check_name(member.name)
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

"""Uploading an archive (tar, optionally compressed, or zip) into a workspace, safely.

An archive is checked whole before anything is written: members with absolute
paths, ``..``, links of either kind, devices or FIFOs refuse the whole archive,
so a crafted archive can neither escape the workspace nor leave half its files.

What an archive unpacks to is bounded before it is unpacked: at most
``MAX_MEMBERS`` members, and at most ``limit`` bytes in all (the workspace's size),
counted as the decompressor produces them. A zip bomb (a few hundred kilobytes that
inflate to gigabytes) is refused once it passes the limit, having cost no more
memory than the limit; nothing is held but the member being written. Files are
written through the sandbox, which applies its own path checks and size limit again.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import io
import lzma
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Any

from hangar.errors import SandboxFileError
from hangar.sandbox.base import FileInfo, Sandbox

MAX_MEMBERS = 10_000
CHUNK = 1024 * 1024


def _refuse(name: str, why: str) -> SandboxFileError:
    return SandboxFileError(
        f"archive member {name[:200]!r} {why}; nothing was extracted",
        details={"status": "denied", "member": name[:200]},
    )


def _too_big(limit: int) -> SandboxFileError:
    return SandboxFileError(
        f"the archive unpacks to more than {limit} bytes, the workspace's size; nothing "
        "was extracted",
        hint="send a smaller archive, or a template with a larger spec.limits.workspaceMb",
        details={"status": "denied", "limit": limit},
    )


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise _refuse(name, "has an absolute path")
    if ".." in path.parts:
        raise _refuse(name, "climbs out with '..'")
    return path


class _Bounded(io.RawIOBase):
    """A decompressed stream that refuses to yield more than ``limit`` bytes."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.read_so_far = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(min(len(buffer), CHUNK))
        self.read_so_far += len(data)
        if self.read_so_far > self.limit:
            raise _too_big(self.limit)
        buffer[: len(data)] = data
        return len(data)


def _decompressed(data: bytes, limit: int) -> IO[bytes]:
    """The tar stream inside ``data`` (gzip, bzip2, xz or none), bounded."""
    raw: Any = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        raw = gzip.GzipFile(fileobj=raw)
    elif data[:3] == b"BZh":
        raw = bz2.BZ2File(raw)
    elif data[:6] == b"\xfd7zXZ\x00":
        raw = lzma.LZMAFile(raw)  # noqa: SIM115 - closed with the tar reading it
    # The tar headers, pax records included, are bounded too: headers plus the files'
    # bytes cannot pass the limit, with a block of slack per member.
    return io.BufferedReader(_Bounded(raw, limit + 1024 * (MAX_MEMBERS + 1)))


def _zip_members(data: bytes, limit: int) -> Iterator[tuple[str, IO[bytes] | None]]:
    """Each regular file of a zip (None for a folder), after checking them all."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise SandboxFileError(f"the archive has more than {MAX_MEMBERS} members")
        total = 0
        for info in infos:
            _check_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse(info.filename, "is a link")
            if not info.is_dir() and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                raise _refuse(info.filename, "is not a regular file")
            total += info.file_size  # what the member says it inflates to: read no further
            if total > limit:
                raise _too_big(limit)
        for info in infos:
            if info.is_dir():
                continue
            with archive.open(info) as handle:
                yield str(_check_name(info.filename)), handle


def _tar_members(data: bytes, limit: int) -> Iterator[tuple[str, IO[bytes] | None]]:
    """Each regular file of a tar, read once as a stream (a second pass writes)."""
    try:
        archive = tarfile.open(fileobj=_decompressed(data, limit), mode="r|")  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
        raise SandboxFileError(f"not a tar or zip archive: {exc}") from None
    total = 0
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
            total += member.size
            if total > limit:
                raise _too_big(limit)
            yield str(path), archive.extractfile(member)


def _members(data: bytes, limit: int) -> Iterator[tuple[str, IO[bytes] | None]]:
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            yield from _zip_members(data, limit)
        except zipfile.BadZipFile as exc:
            raise SandboxFileError(f"not a valid zip archive: {exc}") from None
        return
    try:
        yield from _tar_members(data, limit)
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError) as exc:
        raise SandboxFileError(f"not a valid tar archive: {exc}") from None


def checked_members(data: bytes, limit: int) -> list[tuple[str, int]]:
    """Every regular file's path and size, or the error naming the first member that
    may not be extracted; reads the archive through, keeping none of its content."""
    found = []
    for path, handle in _members(data, limit):
        size = 0
        if handle is not None:
            while piece := handle.read(CHUNK):
                size += len(piece)
        found.append((path, size))
    return found


async def extract(sandbox: Sandbox, data: bytes, into: str, limit: int) -> list[FileInfo]:
    """Write the archive's files into the workspace: all of them once all are checked,
    or none. Unpacking happens off the event loop, a member at a time."""
    await asyncio.to_thread(checked_members, data, limit)
    members = _members(data, limit)

    def next_member() -> tuple[str, bytes] | None:
        found = next(members, None)
        if found is None:
            return None
        path, handle = found
        return path, handle.read() if handle is not None else b""

    written = []
    while (member := await asyncio.to_thread(next_member)) is not None:
        path, content = member
        target = f"{into.rstrip('/')}/{path}" if into else path
        written.append(await sandbox.write_file(target, content))
    return written

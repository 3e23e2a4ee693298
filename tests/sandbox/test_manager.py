"""Sessions, warm pools, reaping and namespaces."""

from __future__ import annotations

import asyncio
import time

import pytest

from hangar.admission import Admission, AdmissionConfig
from hangar.errors import SandboxLimitError, SandboxNotFoundError
from hangar.sandbox.base import ExecStatus
from hangar.sandbox.manager import SandboxManager
from hangar.spec.sandbox import SandboxTemplateSpec


def spec(**fields: object) -> SandboxTemplateSpec:
    return SandboxTemplateSpec.model_validate({"backend": "bwrap", **fields})


async def test_a_warm_pool_hands_out_started_sandboxes_and_refills() -> None:
    manager = SandboxManager()
    template = spec(warmPool=2)
    try:
        await manager.warm(template)
        pool = manager.pools[manager.pool_key(template)]
        ready = {sandbox.id for sandbox in pool}
        assert len(ready) == 2
        session = await manager.create("team-a", template)
        assert session.sandbox.id in ready  # taken from the pool, not started
        await manager.settle()
        assert len(pool) == 2  # and the pool filled up again
    finally:
        await manager.close()


async def test_past_the_namespaces_ceiling_a_run_waits_for_room_and_a_client_is_told() -> None:
    """Runs executing at once are many, sandboxes few: a run's sandbox waits until one
    of the namespace's goes; a client asking over the API gets an error at once."""
    config = AdmissionConfig.model_validate({"sandboxes": [{"sandboxes": 1}]})
    manager = SandboxManager(admission=Admission(None, config=config))
    try:
        first = await manager.create("team-a", spec())
        waiting = asyncio.create_task(manager.create("team-a", spec(), wait=True))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        with pytest.raises(SandboxLimitError, match="already has 1 live sandboxes"):
            await manager.create("team-a", spec())
        other = await manager.create("team-b", spec())  # another namespace's room
        await manager.delete("team-a", first.sandbox.id)
        second = await asyncio.wait_for(waiting, 30)
        assert manager.list("team-a") == [second] and manager.list("team-b") == [other]
        assert (await second.sandbox.run_python("6 * 7")).value == "42"
    finally:
        await manager.close()


async def test_idle_sessions_are_reaped() -> None:
    manager = SandboxManager()
    try:
        session = await manager.create("team-a", spec(idleTimeoutSeconds=0.001))
        deadline = time.monotonic() + 5
        while not await manager.reap():  # idle past a millisecond almost at once
            assert time.monotonic() < deadline
        assert not session.sandbox.alive
        with pytest.raises(SandboxNotFoundError):
            manager.get("team-a", session.sandbox.id)
    finally:
        await manager.close()


async def test_two_namespaces_never_see_each_others_files_or_processes() -> None:
    manager = SandboxManager()
    try:
        a = await manager.create("team-a", spec())
        b = await manager.create("team-b", spec())
        await a.sandbox.run_python("open('secret.txt', 'w').write('a only')\nimport time")
        sleeper = await a.sandbox.run_shell("sleep 30 & echo started")
        assert sleeper.stdout == "started\n"
        assert [f.path for f in await b.sandbox.list_files()] == []
        seen = await b.sandbox.run_shell("ls /proc | grep -c '^[0-9]' ; ps -eo args")
        assert "sleep 30" not in seen.stdout
        probe = await b.sandbox.run_python("import os\nos.path.exists('/workspace/secret.txt')")
        assert (probe.status, probe.value) == (ExecStatus.OK, "False")
        with pytest.raises(SandboxNotFoundError):
            manager.get("team-b", a.sandbox.id)
        assert [s.sandbox.id for s in manager.list("team-b")] == [b.sandbox.id]
    finally:
        await manager.close()


def zip_of(*members: tuple[str, bytes, int]) -> bytes:
    """A zip of (name, content, unix mode) members."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, content)
    return buffer.getvalue()


async def test_zip_archives_extract_and_crafted_ones_are_refused_whole() -> None:
    import stat

    from hangar.errors import SandboxFileError
    from hangar.sandbox.archive import extract

    manager = SandboxManager()
    try:
        sandbox = (await manager.create("team-a", spec())).sandbox
        good = zip_of(("docs/a.txt", b"A", stat.S_IFREG | 0o644), ("b.txt", b"B", 0))
        assert [f.path for f in await extract(sandbox, good, "", 1 << 20)] == [
            "docs/a.txt",
            "b.txt",
        ]
        for bad in (
            ("../escape", b"x", stat.S_IFREG | 0o644),
            ("/etc/evil", b"x", stat.S_IFREG | 0o644),
            ("C:\\\\evil", b"x", stat.S_IFREG | 0o644),
            ("link", b"/etc/passwd", stat.S_IFLNK | 0o777),
        ):
            with pytest.raises(SandboxFileError):
                await extract(sandbox, zip_of(("fine.txt", b"ok", 0), bad), "", 1 << 20)
        assert {f.path for f in await sandbox.list_files()} == {"docs/a.txt", "b.txt"}
        with pytest.raises(SandboxFileError, match="not a tar or zip"):
            await extract(sandbox, b"plain bytes, not an archive", "", 1 << 20)
    finally:
        await manager.close()

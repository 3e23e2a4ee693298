"""Sessions, warm pools, reaping and namespaces."""

from __future__ import annotations

import time

import pytest

from hangar.errors import SandboxNotFoundError
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

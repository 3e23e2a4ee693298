"""The admin key a deployment chooses (``HANGAR_ADMIN_KEY``, from a Kubernetes Secret):
every gateway replica makes sure that one key exists instead of minting its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hangar.config import Settings
from hangar.errors import ConfigurationError
from hangar.gateway.server import bootstrap
from hangar.roles import Role
from hangar.runtime.host import Runtime
from tests.conftest import POSTGRES_URL

CHOSEN = "hgr_" + "c0ffee" * 8


def replica(home: Path, schema: str, admin_key: str) -> Runtime:
    settings = Settings(
        home=home, telemetry="off", database_url=POSTGRES_URL, database_schema=schema,
        admin_key=admin_key,
    )  # fmt: skip
    return Runtime(settings)


async def test_replicas_starting_together_share_the_chosen_admin_key(
    tmp_path: Path, pg_schema: str
) -> None:
    replicas = [replica(tmp_path / f"home{i}", pg_schema, CHOSEN) for i in range(3)]
    try:
        keys = await asyncio.gather(*(bootstrap(r) for r in replicas))
        assert keys == [CHOSEN] * 3
        admins = [k for k in await replicas[0].store.list_api_keys() if k.role is Role.ADMIN]
        assert len(admins) == 1  # one key, not one per replica
        found = await replicas[0].store.authenticate(CHOSEN)
        assert found is not None and found.admin
        assert (tmp_path / "home1" / "admin.key").read_text().strip() == CHOSEN
    finally:
        for r in replicas:
            await r.store.close()


@pytest.mark.parametrize("chosen", ["hgr_short", "sk-" + "x" * 40, ""])
async def test_an_admin_key_too_weak_or_of_another_kind_is_refused(
    tmp_path: Path, pg_schema: str, chosen: str
) -> None:
    runtime = replica(tmp_path / "home", pg_schema, chosen)
    try:
        with pytest.raises(ConfigurationError, match="HANGAR_ADMIN_KEY must be 'hgr_'"):
            await bootstrap(runtime)
    finally:
        await runtime.store.close()


async def test_a_namespace_keys_secret_cannot_be_made_the_admin_key(
    tmp_path: Path, pg_schema: str
) -> None:
    """Whoever learned a tenant's key gains nothing if it is set as the admin key by
    mistake: the gateway refuses to start rather than serve it as admin."""
    runtime = replica(tmp_path / "home", pg_schema, CHOSEN)
    try:
        await runtime.store.migrate()
        await runtime.store.create_api_key("team-a", "ci", secret=CHOSEN)
        with pytest.raises(ConfigurationError, match="not an admin key"):
            await bootstrap(runtime)
        found = await runtime.store.authenticate(CHOSEN)
        assert found is not None and not found.admin
    finally:
        await runtime.store.close()

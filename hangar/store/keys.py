"""API keys in the store: created with a role and an optional expiry, found by the
hash of their secret, listed, revoked, and stamped with their last use.

Only a key's SHA-256 is kept; its secret exists in the answer that created it and
with whoever holds it. A part of ``SqlStore`` kept apart (a mixin over its engine),
the way the rest of the store is meant to be split.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from hangar.errors import ConflictError
from hangar.ids import utc
from hangar.roles import Role
from hangar.store.engine import SqlCore
from hangar.store.records import KEY_PREFIX, ApiKey
from hangar.store.tables import api_keys

if TYPE_CHECKING:
    pass


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: RowMapping) -> ApiKey:
    created = utc(row["created_at"])
    assert created is not None
    return ApiKey(
        id=row["id"],
        namespace=row["namespace"],
        name=row["name"],
        prefix=row["prefix"],
        role=Role(row["role"]),
        created_at=created,
        expires_at=utc(row["expires_at"]),
        revoked_at=utc(row["revoked_at"]),
        last_used_at=utc(row["last_used_at"]),
    )


class SqlKeys(SqlCore):
    """The store's API keys, over the core's engine."""

    async def create_api_key(
        self,
        namespace: str,
        name: str,
        *,
        role: Role = Role.NAMESPACE_ADMIN,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> tuple[ApiKey, str]:
        import uuid

        secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id=f"key_{uuid.uuid4().hex[:24]}",
            namespace=namespace,
            name=name,
            prefix=secret[:10],
            role=role,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )
        try:
            async with self.writing() as conn:
                await conn.execute(
                    api_keys.insert().values(
                        id=key.id,
                        namespace=namespace,
                        name=name,
                        key_hash=hash_key(secret),
                        prefix=key.prefix,
                        admin=key.admin,
                        role=role.value,
                        created_at=key.created_at,
                        expires_at=expires_at,
                    )
                )
        except IntegrityError:  # only a chosen secret can be taken already
            raise ConflictError(
                "a key with this secret exists already", hint="choose another secret"
            ) from None
        return key, secret

    async def authenticate(self, secret: str) -> ApiKey | None:
        query = sa.select(api_keys).where(api_keys.c.key_hash == hash_key(secret))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _key(row)

    async def list_api_keys(self, namespace: str | None = None) -> list[ApiKey]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at.desc(), api_keys.c.id)
        if namespace is not None:
            query = query.where(api_keys.c.namespace == namespace)
        async with self.engine.connect() as conn:
            return [_key(row) for row in (await conn.execute(query)).mappings()]

    async def revoke_api_key(self, key_id: str, namespace: str | None = None) -> ApiKey | None:
        which = api_keys.c.id == key_id
        if namespace is not None:
            which &= api_keys.c.namespace == namespace
        async with self.writing() as conn:
            await conn.execute(
                api_keys.update()
                .where(which & api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            row = (await conn.execute(sa.select(api_keys).where(which))).mappings().first()
        return None if row is None else _key(row)

    async def touch_api_key(self, key_id: str, at: datetime) -> None:
        async with self.writing() as conn:
            await conn.execute(
                api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=at)
            )

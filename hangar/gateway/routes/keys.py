"""API keys and identity: create (with a role and an expiry), list, revoke, whoami.

An admin key manages every namespace's keys; a namespace admin manages its own
namespace's, and only keys of roles it holds every permission of. A revoked key
stops working within a second on every process (``gateway/guard.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hangar.errors import (
    InvalidRequestError,
    KeyNotFoundError,
    PermissionDeniedError,
)
from hangar.gateway.auth import KeyDep, KeysKey, RuntimeDep
from hangar.roles import PERMISSIONS, Permission, Role, may_grant
from hangar.spec.base import check_name
from hangar.store.records import ApiKey

router = APIRouter(tags=["keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    namespace: str | None = Field(
        default=None, description="The namespace the key is bound to; default: the caller's."
    )
    name: str = Field(default="key", min_length=1, max_length=253)
    role: Role | None = Field(default=None, description="Default: developer.")
    admin: bool = Field(default=False, description="The same as role 'admin'.")
    expires_in: float | None = Field(
        default=None,
        alias="expiresIn",
        gt=0,
        le=10 * 365 * 86_400,
        description="Seconds until the key stops working; default: never.",
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "namespace")

    @model_validator(mode="after")
    def _one_role(self) -> KeyRequest:
        if self.admin and self.role not in (None, Role.ADMIN):
            raise ValueError("give 'role' or 'admin: true', not both")
        return self

    def wanted_role(self) -> Role:
        return Role.ADMIN if self.admin else (self.role or Role.DEVELOPER)


def _managed(key: ApiKey, namespace: str, role: Role, doing: str) -> None:
    """Refuse what this key may not do to a key of ``role`` in ``namespace``."""
    if namespace != key.namespace and not key.may(Permission.INSTALLATION):
        raise PermissionDeniedError(
            f"a {key.role.value} key may {doing} keys of namespace {key.namespace!r} only",
            hint="use an admin key",
        )
    if not may_grant(key.role, role):
        raise PermissionDeniedError(
            f"a {key.role.value} key may not {doing} a key of role {role.value!r}",
            hint="only a key holding every permission of a role may "
            f"{doing} keys of it; roles it may: "
            + ", ".join(r.value for r in Role if PERMISSIONS[r] <= PERMISSIONS[key.role]),
        )


@router.post("/v1/keys", status_code=201)
async def create_key(body: KeyRequest, key: KeysKey, rt: RuntimeDep) -> dict[str, Any]:
    """Create an API key bound to a namespace. The secret is shown only in this answer."""
    namespace = body.namespace or key.namespace
    role = body.wanted_role()
    _managed(key, namespace, role, "create")
    expires_at = (
        None if body.expires_in is None else datetime.now(UTC) + timedelta(seconds=body.expires_in)
    )
    created, secret = await rt.keys.create_api_key(
        namespace, body.name, role=role, expires_at=expires_at
    )
    return {**created.to_dict(), "admin": created.admin, "key": secret}


@router.get("/v1/keys")
async def list_keys(key: KeysKey, rt: RuntimeDep, all: bool = False) -> dict[str, Any]:
    """The namespace's keys (``all=true`` with an admin key: every namespace's), newest
    first; never a secret."""
    if all and not key.may(Permission.INSTALLATION):
        raise PermissionDeniedError(
            f"a {key.role.value} key lists its own namespace's keys only", hint="drop all=true"
        )
    found = await rt.keys.list_api_keys(None if all else key.namespace)
    return {"items": [k.to_dict() for k in found]}


@router.delete("/v1/keys/{key_id}")
async def revoke_key(key_id: str, request: Request, key: KeysKey, rt: RuntimeDep) -> dict[str, Any]:
    """Revoke a key: within a second no process accepts it. Revoking twice is harmless."""
    scope = None if key.may(Permission.INSTALLATION) else key.namespace
    target = next((k for k in await rt.keys.list_api_keys(scope) if k.id == key_id), None)
    if target is None:
        raise KeyNotFoundError(f"key {key_id[:40]!r} not found", details={"key": key_id[:40]})
    _managed(key, target.namespace, target.role, "revoke")
    revoked = await rt.keys.revoke_api_key(key_id, scope)
    if revoked is None:
        raise InvalidRequestError(f"key {key_id[:40]!r} could not be revoked")
    request.app.state.keys.forget(key_id)
    return revoked.to_dict()


@router.get("/v1/whoami")
async def whoami(key: KeyDep) -> dict[str, Any]:
    """The key this request acts as, its namespace and what it may do."""
    return {
        **key.to_dict(),
        "admin": key.admin,
        "permissions": sorted(p.value for p in PERMISSIONS[key.role]),
    }

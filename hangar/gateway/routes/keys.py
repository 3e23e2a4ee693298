"""API keys and identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hangar.gateway.auth import AdminDep, KeyDep, RuntimeDep
from hangar.spec.base import check_name

router = APIRouter(tags=["keys"])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(description="The namespace the key is bound to.")
    name: str = Field(default="key", max_length=253)
    admin: bool = False

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        return check_name(value, "namespace")


@router.post("/v1/keys", status_code=201)
async def create_key(body: KeyRequest, _: AdminDep, rt: RuntimeDep) -> dict[str, Any]:
    """Create an API key bound to a namespace. The secret is shown only in this answer."""
    key, secret = await rt.store.create_api_key(body.namespace, body.name, admin=body.admin)
    return {
        "id": key.id,
        "namespace": key.namespace,
        "name": key.name,
        "admin": key.admin,
        "key": secret,
        "created_at": key.created_at.isoformat(),
    }


@router.get("/v1/whoami")
async def whoami(key: KeyDep) -> dict[str, Any]:
    return {"id": key.id, "namespace": key.namespace, "name": key.name, "admin": key.admin}

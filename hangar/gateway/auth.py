"""API keys as a FastAPI dependency: every request is bound to one namespace."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hangar.errors import AuthenticationError, PermissionDeniedError
from hangar.runtime.host import Runtime
from hangar.store.base import ApiKey


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def api_key(request: Request) -> ApiKey:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationError(
            "missing API key",
            hint="send 'Authorization: Bearer <key>'; `hangar up` prints the admin key",
        )
    key = await runtime(request).store.authenticate(secret.strip())
    if key is None:
        raise AuthenticationError(
            "the API key is not valid",
            hint="check the key, or create one with `hangar keys create`",
        )
    return key


async def admin_key(key: Annotated[ApiKey, Depends(api_key)]) -> ApiKey:
    if not key.admin:
        raise PermissionDeniedError("this needs an admin API key")
    return key


RuntimeDep = Annotated[Runtime, Depends(runtime)]
KeyDep = Annotated[ApiKey, Depends(api_key)]
AdminDep = Annotated[ApiKey, Depends(admin_key)]

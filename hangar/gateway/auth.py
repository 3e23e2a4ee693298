"""Who is asking, and whether they may: FastAPI dependencies over the key the guard
admitted (``gateway/guard.py``), one per permission a route needs.

Every route names the permission it needs through its key's type (``ReadKey``,
``RunKey``, …); a route that a runner may use on its own work takes ``ReadOrRunKey``
and asks ``visible`` whether a record is the key's to see.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from hangar.errors import AuthenticationError, PermissionDeniedError
from hangar.gateway.guard import STATE_KEY
from hangar.roles import PERMISSIONS, Permission, Role
from hangar.runtime.host import Runtime
from hangar.store.records import ApiKey

_DOING = {
    Permission.READ: "read this namespace",
    Permission.WRITE: "apply, change or delete resources and data",
    Permission.GOVERN: "apply or delete Budgets, Quotas and ToolPolicies",
    Permission.RUN: "start runs or use sandboxes",
    Permission.APPROVE: "decide held tool calls",
    Permission.KEYS: "manage API keys",
    Permission.INSTALLATION: "act for the whole installation",
}


async def runtime(request: Request) -> Runtime:
    """The app's runtime. (Dependencies are ``async``: FastAPI runs a plain ``def`` in
    its thread pool, a hop to another thread and back on every request.)"""
    rt: Runtime = request.app.state.runtime
    return rt


def admitted_key(request: Request) -> ApiKey:
    """The key the guard admitted for this request."""
    key = request.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(key, ApiKey):
        raise AuthenticationError("missing API key", hint="send 'Authorization: Bearer <key>'")
    return key


async def principal(request: Request) -> ApiKey:
    """``admitted_key``, as a dependency."""
    return admitted_key(request)


def refuse(key: ApiKey, *permissions: Permission) -> PermissionDeniedError:
    roles = sorted(r.value for r in Role if any(p in PERMISSIONS[r] for p in permissions))
    return PermissionDeniedError(
        f"a {key.role.value} key may not {_DOING[permissions[0]]}",
        hint=f"use a key with one of the roles: {', '.join(roles)}",
        details={"role": key.role.value, "needs": [p.value for p in permissions]},
    )


def requires(*permissions: Permission) -> Any:
    """A dependency: the request's key, if it holds any of ``permissions``."""

    async def check(request: Request) -> ApiKey:
        key = admitted_key(request)
        if not any(key.may(p) for p in permissions):
            raise refuse(key, *permissions)
        return key

    return Depends(check)


def visible(key: ApiKey, owner: str | None) -> bool:
    """Whether a record made by key ``owner`` (a run, a session, a batch) is this
    key's to see: everything for a reader, its own for a runner."""
    return key.may(Permission.READ) or (owner is not None and owner == key.id)


def own(key: ApiKey) -> str | None:
    """The key id a listing is narrowed to: None (all) for a reader, its own for a
    runner."""
    return None if key.may(Permission.READ) else key.id


RuntimeDep = Annotated[Runtime, Depends(runtime)]
KeyDep = Annotated[ApiKey, Depends(principal)]
"""Any authenticated key."""
ReadKey = Annotated[ApiKey, requires(Permission.READ)]
WriteKey = Annotated[ApiKey, requires(Permission.WRITE)]
RunKey = Annotated[ApiKey, requires(Permission.RUN)]
ReadOrRunKey = Annotated[ApiKey, requires(Permission.READ, Permission.RUN)]
ApproveKey = Annotated[ApiKey, requires(Permission.APPROVE)]
KeysKey = Annotated[ApiKey, requires(Permission.KEYS)]
AdminDep = Annotated[ApiKey, requires(Permission.INSTALLATION)]

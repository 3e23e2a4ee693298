"""Who may do what: the roles an API key holds and the permissions each grants.

Roles follow Kubernetes' usual split of a tenant's people:

| role | may |
| --- | --- |
| ``admin`` | everything, in every namespace: the installation's operator |
| ``namespace-admin`` | everything in its namespace, its keys and its governance included |
| ``developer`` | apply and delete resources, start and read runs, read everything |
| ``runner`` | start runs, and read, follow and cancel the runs it started |
| ``viewer`` | read everything in its namespace, change nothing |
| ``approver`` | see and decide held tool calls, nothing else |

The gateway checks a route's permission in one place (``gateway/auth.py``); the CLI
and the console only show what a key may do, they never decide it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    NAMESPACE_ADMIN = "namespace-admin"
    DEVELOPER = "developer"
    RUNNER = "runner"
    VIEWER = "viewer"
    APPROVER = "approver"


class Permission(StrEnum):
    READ = "read"
    """See the namespace's resources, runs, traces, usage, audit, memories, knowledge."""
    WRITE = "write"
    """Apply and delete resources, ingest knowledge, edit end users' memories."""
    GOVERN = "govern"
    """Apply and delete what bounds the others: Budgets, Quotas, ToolPolicies."""
    RUN = "run"
    """Start runs (REST, OpenAI, MCP, batches, sessions), use sandboxes."""
    APPROVE = "approve"
    """Decide held tool calls."""
    KEYS = "keys"
    """Create, list and revoke the namespace's keys."""
    INSTALLATION = "installation"
    """Act in any namespace; see what spans namespaces (metrics)."""


_ALL = frozenset(Permission)
PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: _ALL,
    Role.NAMESPACE_ADMIN: _ALL - {Permission.INSTALLATION},
    Role.DEVELOPER: frozenset({Permission.READ, Permission.WRITE, Permission.RUN}),
    Role.RUNNER: frozenset({Permission.RUN}),
    Role.VIEWER: frozenset({Permission.READ}),
    Role.APPROVER: frozenset({Permission.APPROVE}),
}

RANK = {role: len(PERMISSIONS[role]) for role in Role}


def allows(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def may_grant(granter: Role, role: Role) -> bool:
    """A key may create keys of roles it holds every permission of (a namespace admin
    never makes an admin)."""
    return allows(granter, Permission.KEYS) and PERMISSIONS[role] <= PERMISSIONS[granter]

"""Kinds by name: the one place that knows which resource classes exist."""

from __future__ import annotations

from typing import Any

from hangar.errors import UnknownKindError, shown
from hangar.spec.agent import Agent
from hangar.spec.base import Resource
from hangar.spec.budget import Budget
from hangar.spec.knowledge import KnowledgeBase
from hangar.spec.mcp import MCPServer
from hangar.spec.model import Model
from hangar.spec.quota import Quota
from hangar.spec.sandbox import SandboxTemplate
from hangar.spec.secret import Secret
from hangar.spec.toolpolicy import NamespaceToolPolicy
from hangar.spec.trigger import Trigger

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (
        Agent,
        Model,
        SandboxTemplate,
        MCPServer,
        Secret,
        Budget,
        Trigger,
        Quota,
        KnowledgeBase,
        NamespaceToolPolicy,
    )
}
_BY_ALIAS: dict[str, type[Resource]] = {}
for _cls in KINDS.values():
    for _alias in (_cls.KIND.lower(), _cls.PLURAL, _cls.PLURAL.rstrip("s")):
        _BY_ALIAS[_alias] = _cls


def kind_class(name: str) -> type[Resource]:
    """Resolve a kind as a user types it: ``Agent``, ``agent``, ``agents``."""
    cls = KINDS.get(name) or _BY_ALIAS.get(name.lower())
    if cls is None:
        raise UnknownKindError(
            f"unknown kind {shown(name)}",
            hint=f"known kinds: {', '.join(sorted(KINDS))}",
            details={"kind": name, "known": sorted(KINDS)},
        )
    return cls


def json_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind, with camelCase names as on the wire."""
    cls = kind_class(kind)
    return cls.model_json_schema(by_alias=True)

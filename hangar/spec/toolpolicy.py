"""``ToolPolicy``: a namespace's own rules over every tool call made in it, by any of
its agents or through its MCP endpoint (``/v1/mcp``).

An agent's ``toolPolicy`` is its developer's; a namespace's ToolPolicies are its
administrator's, and bound every agent: each call is decided by all of them, and the
strictest decision holds (``deny`` over ``require_approval`` over ``allow``). Calls
through ``/v1/mcp`` have no person to wait for, so ``require_approval`` refuses them
there. Only keys that may govern the namespace apply or delete ToolPolicies.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from hangar.spec.agent import ToolPolicy
from hangar.spec.base import Resource


class ToolPolicySpec(ToolPolicy):
    """``rules`` (first match decides) and a ``default`` for tools no rule matches."""


class NamespaceToolPolicy(Resource):
    """Which tools any agent of the namespace may run, need approval for, or may not run;
    agents' own policies apply within it."""

    KIND: ClassVar[str] = "ToolPolicy"
    PLURAL: ClassVar[str] = "toolpolicies"
    kind: Literal["ToolPolicy"]
    spec: ToolPolicySpec

"""Tool policy: whether a tool call may run, must wait for a person, or is refused.

A call is decided by the agent's own ``toolPolicy`` and by every ``ToolPolicy`` of
its namespace; the strictest decision holds. Decisions name the rule that made them,
so a refusal tells the model (and the person reading the run) exactly which line of
which spec to change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from hangar.spec.agent import PolicyAction, ToolPolicy

AGENT_POLICY = "toolPolicy"
STRICTNESS: dict[PolicyAction, int] = {"allow": 0, "require_approval": 1, "deny": 2}


@dataclass(frozen=True)
class NamedPolicy:
    """A policy and where it is written: the agent's ``toolPolicy``, or a namespace's
    ``ToolPolicy 'name'``."""

    where: str
    policy: ToolPolicy

    @property
    def namespaces(self) -> bool:
        return self.where != AGENT_POLICY


@dataclass(frozen=True)
class Decision:
    action: PolicyAction
    rule: str
    """Which part of which policy decided: ``toolPolicy.rules[1] ('fs__*': deny)`` or
    ``ToolPolicy 'guard' default (deny)``."""
    namespaces: bool = False
    """Whether a namespace's ToolPolicy decided (not the agent's own)."""

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


def decide(policy: ToolPolicy, tool: str, where: str = AGENT_POLICY) -> Decision:
    """One policy's decision: its first matching rule, or its default."""
    namespaces = where != AGENT_POLICY
    dot = "." if not namespaces else " "
    for i, rule in enumerate(policy.rules):
        if fnmatchcase(tool, rule.tool):
            return Decision(
                rule.action, f"{where}{dot}rules[{i}] ({rule.tool!r}: {rule.action})", namespaces
            )
    return Decision(policy.default, f"{where}{dot}default ({policy.default})", namespaces)


def decide_all(policies: Sequence[NamedPolicy], tool: str) -> Decision:
    """The strictest decision of all ``policies`` (allow when there are none)."""
    found = Decision("allow", "no policy")
    for named in policies:
        decision = decide(named.policy, tool, named.where)
        if STRICTNESS[decision.action] > STRICTNESS[found.action]:
            found = decision
    return found


def refusal(agent: str, tool: str, decision: Decision) -> str:
    if decision.namespaces:
        return (
            f"tool {tool!r} is denied in this namespace by {decision.rule}; a namespace "
            "administrator can change that ToolPolicy"
        )
    return (
        f"tool {tool!r} is denied for agent {agent!r} by its policy: {decision.rule}; "
        "change the agent's spec.toolPolicy to allow it"
    )

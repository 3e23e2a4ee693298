"""Tool policy: whether a tool call may run, must wait for a person, or is refused.

Decisions name the rule that made them, so a refusal tells the model (and the
person reading the run) exactly which line of the agent's spec to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from hangar.spec.agent import PolicyAction, ToolPolicy


@dataclass(frozen=True)
class Decision:
    action: PolicyAction
    rule: str
    """Which part of the policy decided: ``toolPolicy.rules[1] ('fs__*': deny)`` or
    ``toolPolicy.default (deny)``."""

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


def decide(policy: ToolPolicy, tool: str) -> Decision:
    for i, rule in enumerate(policy.rules):
        if fnmatchcase(tool, rule.tool):
            return Decision(rule.action, f"toolPolicy.rules[{i}] ({rule.tool!r}: {rule.action})")
    return Decision(policy.default, f"toolPolicy.default ({policy.default})")


def refusal(agent: str, tool: str, decision: Decision) -> str:
    return (
        f"tool {tool!r} is denied for agent {agent!r} by its policy: {decision.rule}; "
        "change the agent's spec.toolPolicy to allow it"
    )

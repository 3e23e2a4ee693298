"""Token and cost usage: what a model call, a run and a ledger line add up.

At the bottom so that model providers, tools and telemetry can count usage without
importing the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    """All input tokens, cached ones included."""
    output_tokens: int = 0
    cost: float = 0.0
    cached_input_tokens: int = 0
    """Input tokens the provider served from its prompt cache (billed at its own price)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost + other.cost,
            self.cached_input_tokens + other.cached_input_tokens,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost": round(self.cost, 10),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            float(data.get("cost", 0.0)),
            int(data.get("cached_input_tokens", 0)),
        )

"""Token prices: what a call cost, from the prices on the ``Model`` resource."""

from __future__ import annotations

from hangar.spec.model import Pricing
from hangar.store.base import Usage


def priced(usage: Usage, pricing: Pricing) -> Usage:
    """``usage`` with its cost filled in, in US dollars."""
    cost = (
        usage.input_tokens * pricing.input_per_million
        + usage.output_tokens * pricing.output_per_million
    ) / 1_000_000
    return Usage(usage.input_tokens, usage.output_tokens, cost)

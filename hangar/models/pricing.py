"""Token prices: what a call cost, from the prices on the ``Model`` resource."""

from __future__ import annotations

from hangar.spec.model import Pricing
from hangar.usage import Usage


def priced(usage: Usage, pricing: Pricing) -> Usage:
    """``usage`` with its cost filled in, in US dollars. Cached input tokens cost the
    cached price (the input price when the Model sets none)."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = pricing.cached_input_per_million or pricing.input_per_million
    cost = (
        (usage.input_tokens - cached) * pricing.input_per_million
        + cached * cached_price
        + usage.output_tokens * pricing.output_per_million
    ) / 1_000_000
    return Usage(usage.input_tokens, usage.output_tokens, cost, cached)

"""Budgets: caps on tokens and money per namespace or agent, per day or month.

Spend is capped before it happens. Every model call first reserves its estimated
size (the request's tokens, plus the most it may answer) on every budget that
applies, in one statement per budget that succeeds only while spent plus reserved
is under the limit; then it swaps the reservation for what it really cost. So
however many runs call at once, the last call let in is the only one that can pass
the limit: a budget overshoots by at most one call's worth, and only when that
call answers more than its estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from hangar.errors import BudgetExceededError
from hangar.models.base import estimate_request_tokens
from hangar.models.messages import ModelRequest
from hangar.models.pricing import priced
from hangar.spec.budget import Budget, BudgetSpec
from hangar.spec.model import Pricing
from hangar.store.base import Ledger, ResourceStore
from hangar.store.records import BudgetLine
from hangar.usage import Usage


class _BudgetsStore(Ledger, ResourceStore, Protocol):
    """What budgets use of the store: the ledger's counters, and the Budget resources."""


DEFAULT_OUTPUT_ESTIMATE = 1024
"""Tokens a call may answer when its agent sets no ``maxOutputTokens``."""


def period_of(spec: BudgetSpec, now: datetime) -> str:
    day = now.astimezone(UTC)
    return day.strftime("%Y-%m-%d") if spec.period == "day" else day.strftime("%Y-%m")


@dataclass(frozen=True)
class _Applied:
    name: str
    spec: BudgetSpec
    line: BudgetLine
    period: str


@dataclass(frozen=True)
class Hold:
    """A reservation on some budget lines, to settle after the call (the run's, when
    ``run_id`` is set)."""

    lines: tuple[BudgetLine, ...]
    tokens: int
    cost: float
    run_id: str | None = None


class Budgets:
    def __init__(self, store: _BudgetsStore) -> None:
        self.store = store

    async def applying(self, namespace: str, agent: str) -> list[_Applied]:
        now = datetime.now(UTC)
        found = []
        for stored in await self.store.cached_resources(namespace, Budget.KIND):
            spec = BudgetSpec.model_validate(stored.spec)
            if spec.agent is not None and spec.agent != agent:
                continue
            period = period_of(spec, now)
            key = f"{namespace}/{stored.name}/{period}"
            found.append(
                _Applied(stored.name, spec, BudgetLine(key, spec.max_tokens, spec.max_cost), period)
            )
        return found

    @staticmethod
    def _exceeded(applied: _Applied, tokens: int, cost: float) -> BudgetExceededError:
        spec = applied.spec
        limits = " and ".join(
            part
            for part in (
                f"{spec.max_tokens} tokens" if spec.max_tokens is not None else "",
                f"${spec.max_cost:g}" if spec.max_cost is not None else "",
            )
            if part
        )
        scope = f"agent {spec.agent!r}" if spec.agent else "the namespace"
        return BudgetExceededError(
            f"Budget {applied.name!r} of {scope} is used up for {applied.period}: "
            f"{tokens} tokens and ${cost:.6f} spent of {limits} per {spec.period}",
            hint=f"raise the Budget's limits, or wait for the next {spec.period} (UTC)",
            details={"budget": applied.name, "period": applied.period},
        )

    async def check(self, namespace: str, agent: str) -> None:
        """Refuse a new run when a budget it would charge is used up already."""
        for applied in await self.applying(namespace, agent):
            tokens, cost = await self.store.budget_spent(applied.line.key)
            spec = applied.spec
            if (spec.max_tokens is not None and tokens >= spec.max_tokens) or (
                spec.max_cost is not None and cost >= spec.max_cost
            ):
                raise self._exceeded(applied, tokens, cost)

    async def reserve(
        self, namespace: str, agent: str, tokens: int, cost: float, run_id: str | None = None
    ) -> Hold | None:
        """Reserve a call's estimate on every budget that applies (recorded as the run
        ``run_id``'s, when given), or raise ``BudgetExceededError``."""
        applied = await self.applying(namespace, agent)
        if not applied:
            return None
        lines = tuple(a.line for a in applied)
        full = await self.store.reserve_budget(lines, tokens, cost, run_id=run_id)
        if full is not None:
            which = next(a for a in applied if a.line == full)
            spent_tokens, spent_cost = await self.store.budget_spent(full.key)
            raise self._exceeded(which, spent_tokens, spent_cost)
        return Hold(lines, tokens, cost, run_id)

    async def release(self, run_id: str) -> None:
        """Give back what a run taken over had reserved: its worker died during a model
        call, and the call's estimate would stay reserved for the rest of the period."""
        await self.store.release_budget_holds(run_id)

    async def settle(self, hold: Hold | None, usage: Usage) -> None:
        if hold is not None:
            await self.store.settle_budget(
                hold.lines,
                hold.tokens,
                hold.cost,
                usage.total_tokens,
                usage.cost,
                run_id=hold.run_id,
            )


class RunBudget:
    """The budget gate of one run: what the loop asks before and after each model call."""

    def __init__(
        self,
        budgets: Budgets,
        namespace: str,
        agent: str,
        pricing: Pricing,
        max_output_tokens: int | None,
        run_id: str | None = None,
    ) -> None:
        self.budgets = budgets
        self.namespace = namespace
        self.agent = agent
        self.run_id = run_id
        self.pricing = pricing
        self.max_output = max_output_tokens or DEFAULT_OUTPUT_ESTIMATE
        self._unbudgeted = False

    async def reserve(self, request: ModelRequest) -> Hold | None:
        """Raises ``BudgetExceededError`` when a budget has no room for this call. A run
        that found no Budget on its first call looks no more (the common case costs
        one read per run, not one per call)."""
        if self._unbudgeted:
            return None
        estimate = priced(Usage(estimate_request_tokens(request), self.max_output), self.pricing)
        hold = await self.budgets.reserve(
            self.namespace, self.agent, estimate.total_tokens, estimate.cost, self.run_id
        )
        self._unbudgeted = hold is None
        return hold

    async def settle(self, hold: Hold | None, usage: Usage) -> None:
        await self.budgets.settle(hold, usage)

"""``Budget``: a cap on tokens and money for a namespace or one of its agents, per
day or per month (UTC). Checked when a run is asked for and before every model call;
a run that meets an exhausted budget ends with reason ``budget_exceeded``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hangar.spec.base import Resource, SpecModel, check_name


class BudgetSpec(SpecModel):
    agent: str | None = Field(
        default=None, description="Only this agent's runs; default: the whole namespace."
    )
    period: Literal["day", "month"] = "day"
    max_tokens: int | None = Field(default=None, ge=1, description="Input plus output tokens.")
    max_cost: float | None = Field(default=None, gt=0, description="US dollars.")

    @field_validator("agent")
    @classmethod
    def _agent(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "agent name")

    CEL = (
        {
            "rule": "has(self.maxTokens) || has(self.maxCost)",
            "message": "a Budget needs 'maxTokens', 'maxCost' or both",
        },
    )

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.max_tokens is None and self.max_cost is None:
            raise ValueError("a Budget needs 'maxTokens', 'maxCost' or both")
        return self


class Budget(Resource):
    """A ceiling on tokens or spend per day or month, for a namespace or one agent: runs
    past it do not start."""

    KIND: ClassVar[str] = "Budget"
    PLURAL: ClassVar[str] = "budgets"
    kind: Literal["Budget"]
    spec: BudgetSpec

"""``Quota``: how much of the shared workers one namespace may hold at once. Without
one, a namespace gets ``HANGAR_NAMESPACE_MAX_RUNNING`` (no limit by default); with
one, its own figure, higher or lower (several in a namespace: the lowest holds).
Queued runs past the limit wait while other namespaces' runs go on."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from hangar.spec.base import Resource, SpecModel


class QuotaSpec(SpecModel):
    max_running: int = Field(
        ge=0, le=100_000, description="Runs of this namespace running at once, over all workers."
    )


class Quota(Resource):
    """How many runs the namespace may have running at once; more wait, queued."""

    KIND: ClassVar[str] = "Quota"
    PLURAL: ClassVar[str] = "quotas"
    kind: Literal["Quota"]
    spec: QuotaSpec

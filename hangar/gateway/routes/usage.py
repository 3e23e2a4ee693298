"""The usage ledger over REST (sums by namespace, agent, model, run or day; JSON or
CSV) and the Prometheus metrics."""

from __future__ import annotations

import csv
import io
import re
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from hangar.errors import InvalidRequestError
from hangar.gateway.auth import ReadKey, RuntimeDep, admitted_key, refuse
from hangar.roles import Permission
from hangar.store.records import LEDGER_GROUPS

router = APIRouter(tags=["usage"])
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
COLUMNS = ("calls", "input_tokens", "cached_input_tokens", "output_tokens", "cost")


@router.get("/v1/usage", response_model=None)
async def usage(
    key: ReadKey,
    rt: RuntimeDep,
    by: str = Query(default="agent", description="Comma-separated: " + ", ".join(LEDGER_GROUPS)),
    since: str | None = Query(default=None, description="First day, YYYY-MM-DD (UTC)."),
    until: str | None = Query(default=None, description="Last day, YYYY-MM-DD (UTC)."),
    agent: str | None = None,
    model: str | None = None,
    run: str | None = None,
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | Response:
    """Tokens and cost of every model call, summed by the groups asked for."""
    groups = [g.strip() for g in by.split(",") if g.strip()]
    unknown = [g for g in groups if g not in LEDGER_GROUPS]
    if unknown:
        raise InvalidRequestError(
            f"cannot group usage by {', '.join(map(repr, unknown))}",
            hint=f"use any of: {', '.join(LEDGER_GROUPS)}",
        )
    for name, day in (("since", since), ("until", until)):
        if day is not None and not DAY.match(day):
            raise InvalidRequestError(f"{name} must be a day as YYYY-MM-DD, got {day!r}")
    rows = await rt.ledger.usage_summary(
        key.namespace, groups, since=since, until=until, agent=agent, model=model, run_id=run
    )
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=[*groups, *COLUMNS], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="usage.csv"'},
        )
    return {"groupBy": groups, "items": rows}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    """Prometheus exposition: unauthenticated, as scrapers expect (serve it on a network
    only the monitoring system reaches), or with an admin key when
    ``HANGAR_METRICS_AUTH`` is set (it shows every namespace's figures)."""
    if rt.settings.metrics_auth:
        key = admitted_key(request)
        if not key.may(Permission.INSTALLATION):
            raise refuse(key, Permission.INSTALLATION)
    return Response(await rt.exposition(), media_type=CONTENT_TYPE_LATEST)

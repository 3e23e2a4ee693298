"""The audit log of tool calls: who called what, when, with what outcome (never the
arguments themselves, only their hash)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from hangar.gateway.auth import ReadKey, RuntimeDep

router = APIRouter(tags=["audit"])


@router.get("/v1/audit/tool-calls")
async def tool_calls(
    key: ReadKey,
    rt: RuntimeDep,
    run: str | None = None,
    agent: str | None = None,
    limit: int = Query(default=100, ge=1, le=10_000),
) -> dict[str, Any]:
    entries = await rt.audit.list_tool_calls(key.namespace, run_id=run, agent=agent, limit=limit)
    return {"items": [entry.to_dict() for entry in entries]}

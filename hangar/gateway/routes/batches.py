"""Batches over REST: POST a JSONL file, follow its progress, read its results file."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hangar.errors import BatchNotFoundError
from hangar.gateway.auth import ReadOrRunKey, RunKey, RuntimeDep, own

router = APIRouter(tags=["batches"])


def _missing(batch_id: str) -> BatchNotFoundError:
    return BatchNotFoundError(f"batch {batch_id!r} not found", details={"batch": batch_id})


@router.post("/v1/batches", status_code=201)
async def create_batch(request: Request, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    """The body is JSONL: one request per line. Every good line starts a run at once;
    a bad line is recorded with its error and the rest go on."""
    body = await request.body()
    text = body.decode("utf-8", errors="replace")
    batch_id = await rt.batches.create(key.namespace, text, key_id=key.id)
    described = await rt.batches.describe(key.namespace, batch_id)
    assert described is not None
    return described


@router.get("/v1/batches/{batch_id}")
async def get_batch(batch_id: str, key: ReadOrRunKey, rt: RuntimeDep) -> dict[str, Any]:
    described = await rt.batches.describe(key.namespace, batch_id, own(key))
    if described is None:
        raise _missing(batch_id)
    return described


@router.get("/v1/batches/{batch_id}/results")
async def batch_results(batch_id: str, key: ReadOrRunKey, rt: RuntimeDep) -> Response:
    """JSONL, one line per finished request, in the order of the input file."""
    results = await rt.batches.results(key.namespace, batch_id, own(key))
    if results is None:
        raise _missing(batch_id)
    text = "".join(json.dumps(line) + "\n" for line in results)
    return Response(text, media_type="application/jsonl")

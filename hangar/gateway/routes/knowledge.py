"""Knowledge bases over REST: ingest files (uploaded, or the base's declared sources),
follow the job, list and delete sources, search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile

from hangar.errors import InvalidRequestError
from hangar.gateway.auth import ReadKey, ReadOrRunKey, RuntimeDep, WriteKey
from hangar.memory.documents import MAX_BYTES, Upload

router = APIRouter(tags=["knowledge"])
MAX_FILES = 1000
MAX_REQUEST_BYTES = 512 * 1024 * 1024
"""What one request's files may hold in all (each is read whole for its job)."""


async def _uploads(request: Request) -> list[Upload] | None:
    """The files of a multipart request (any field name); ``None`` for a request
    without a body, which ingests the base's declared sources. A file over the limit
    is not read: its job line says so."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        if await request.body():
            raise InvalidRequestError(
                "send files as multipart/form-data (curl -F file=@guide.md), or no body "
                "to ingest the knowledge base's declared sources",
                details={"content_type": kind},
            )
        return None
    form = await request.form(max_files=MAX_FILES)
    uploads = []
    total = 0
    try:
        for _, value in form.multi_items():
            if not isinstance(value, UploadFile):
                continue
            name = value.filename or "upload"
            size = value.size if value.size is not None else 0
            data = await value.read() if size <= MAX_BYTES else None
            if data is not None:
                size = len(data)
                total += size
            if total > MAX_REQUEST_BYTES:
                raise InvalidRequestError(
                    f"the files of one request may hold {MAX_REQUEST_BYTES // 2**20} MiB in all",
                    hint="send them in several requests",
                )
            uploads.append(Upload(name, data, size, value.content_type))
    finally:
        await form.close()
    if not uploads:
        raise InvalidRequestError("the multipart request holds no files")
    names = [u.name for u in uploads]
    if len(set(names)) != len(names):
        raise InvalidRequestError(
            "two uploaded files have the same name; a file's name is its source's name",
            details={"names": sorted({n for n in names if names.count(n) > 1})},
        )
    return uploads


@router.post("/v1/knowledgebases/{name}/ingestions", status_code=202)
async def ingest(name: str, request: Request, key: WriteKey, rt: RuntimeDep) -> dict[str, Any]:
    """Starts an ingestion job and returns it; its progress is at its URL."""
    uploads = await _uploads(request)
    return await rt.knowledge.ingest(key.namespace, name, uploads)


@router.get("/v1/knowledgebases/{name}/ingestions/{job_id}")
async def get_ingestion(name: str, job_id: str, key: ReadKey, rt: RuntimeDep) -> dict[str, Any]:
    return await rt.knowledge.job(key.namespace, name, job_id)


@router.get("/v1/knowledgebases/{name}/sources")
async def list_sources(name: str, key: ReadKey, rt: RuntimeDep) -> dict[str, Any]:
    found = await rt.knowledge.sources(key.namespace, name)
    return {"items": [{"source": s.source, "chunks": s.chunks, "digest": s.digest} for s in found]}


@router.delete("/v1/knowledgebases/{name}/sources")
async def delete_source(
    name: str, source: Annotated[str, Query(min_length=1)], key: WriteKey, rt: RuntimeDep
) -> dict[str, Any]:
    removed = await rt.knowledge.delete_source(key.namespace, name, source)
    return {"source": source, "deleted": removed > 0, "chunks": removed}


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=5, ge=1, le=100)
    mode: Literal["hybrid", "vector", "text"] = "hybrid"


@router.post("/v1/knowledgebases/{name}/search")
async def search(
    name: str, body: SearchRequest, key: ReadOrRunKey, rt: RuntimeDep
) -> dict[str, Any]:
    hits = await rt.knowledge.search(key.namespace, name, body.query, body.k, body.mode)
    return {
        "items": [
            {"text": hit.text, "citation": {"knowledge_base": name, **hit.citation()}}
            for hit in hits
        ]
    }

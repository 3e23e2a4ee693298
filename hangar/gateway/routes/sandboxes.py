"""Sandboxes over REST: create one, run code or commands in it, move files, delete it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from hangar.errors import InvalidRequestError
from hangar.gateway.auth import KeyDep, RunKey, RuntimeDep
from hangar.gateway.sse import SSE_HEADERS, frame
from hangar.runtime.sandboxes import template_spec
from hangar.sandbox.archive import extract
from hangar.sandbox.base import OutputCallback
from hangar.sandbox.manager import Session
from hangar.sandbox.registry import probe_all
from hangar.spec.sandbox import Backend, SandboxTemplateSpec

router = APIRouter(tags=["sandboxes"])


class CreateSandbox(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str | None = Field(default=None, description="A SandboxTemplate's name.")
    backend: Backend | None = Field(default=None, description="Instead of a template: a backend.")


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str | None = Field(default=None, description="Python to run in the session.")
    command: str | None = Field(default=None, description="A shell command, instead of code.")
    timeout: float | None = Field(default=None, gt=0, le=3600)
    stream: bool = Field(default=False, description="Answer over Server-Sent Events.")

    @model_validator(mode="after")
    def _one(self) -> ExecRequest:
        if (self.code is None) == (self.command is None):
            raise ValueError("give exactly one of 'code' or 'command'")
        return self


def _describe(session: Session) -> dict[str, Any]:
    return {
        "id": session.sandbox.id,
        "object": "sandbox",
        "namespace": session.namespace,
        "template": session.template,
        "backend": session.spec.backend,
        "alive": session.sandbox.alive,
        "limits": session.spec.limits.model_dump(by_alias=True),
    }


@router.get("/v1/sandboxes/backends")
async def backends(_: KeyDep) -> dict[str, Any]:
    """Which backends work on this host, and what to do about those that do not."""
    return {
        "items": [
            {
                "backend": a.backend,
                "available": a.available,
                "detail": a.detail,
                "hint": a.hint,
                "features": a.features,
            }
            for a in await probe_all()
        ]
    }


@router.post("/v1/sandboxes", status_code=201)
async def create(body: CreateSandbox, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    if body.template and body.backend:
        raise InvalidRequestError("give a template or a backend, not both")
    if body.backend:
        spec = SandboxTemplateSpec.model_validate({"backend": body.backend})
    else:
        spec = await template_spec(rt.resources, key.namespace, body.template)
    session = await rt.sandboxes.create(key.namespace, spec, body.template or "default")
    return _describe(session)


@router.get("/v1/sandboxes")
async def list_sandboxes(key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    return {"items": [_describe(s) for s in rt.sandboxes.list(key.namespace)]}


@router.get("/v1/sandboxes/{sandbox_id}")
async def get_sandbox(sandbox_id: str, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    return _describe(rt.sandboxes.get(key.namespace, sandbox_id))


@router.post("/v1/sandboxes/{sandbox_id}/exec", response_model=None)
async def execute(
    sandbox_id: str, body: ExecRequest, key: RunKey, rt: RuntimeDep
) -> dict[str, Any] | StreamingResponse:
    sandbox = rt.sandboxes.get(key.namespace, sandbox_id).sandbox

    async def run(on_output: OutputCallback | None = None) -> dict[str, Any]:
        if body.code is not None:
            result = await sandbox.run_python(body.code, timeout=body.timeout, on_output=on_output)
        else:
            result = await sandbox.run_shell(
                body.command or "", timeout=body.timeout, on_output=on_output
            )
        return result.to_dict()

    if not body.stream:
        return await run()

    async def events() -> AsyncIterator[str]:
        """Output as the code prints it (process backends), then the result. Backends
        that cannot stream send their output just before the result."""
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        streamed = {"stdout": False, "stderr": False}

        async def on_output(stream: str, text: str) -> None:
            streamed[stream] = True
            await queue.put((stream, text))

        yield frame({"sandbox": sandbox_id}, event="started")
        task = asyncio.create_task(run(on_output))
        task.add_done_callback(lambda _: queue.put_nowait(None))
        while (item := await queue.get()) is not None:
            yield frame({"text": item[1]}, event=item[0])
        result = await task
        for stream in ("stdout", "stderr"):
            if result[stream] and not streamed[stream]:
                yield frame({"text": result[stream]}, event=stream)
        yield frame(result, event="result")

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/v1/sandboxes/{sandbox_id}/files")
async def list_files(sandbox_id: str, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    files = await rt.sandboxes.get(key.namespace, sandbox_id).sandbox.list_files()
    return {"items": [{"path": f.path, "size": f.size} for f in files]}


FilePath = Annotated[str, Path(description="A path inside the workspace.")]


@router.get("/v1/sandboxes/{sandbox_id}/files/{path:path}")
async def download(sandbox_id: str, path: FilePath, key: RunKey, rt: RuntimeDep) -> Response:
    data = await rt.sandboxes.get(key.namespace, sandbox_id).sandbox.read_file(path)
    return Response(data, media_type="application/octet-stream")


@router.put("/v1/sandboxes/{sandbox_id}/files/{path:path}")
async def upload(
    sandbox_id: str, path: FilePath, request: Request, key: RunKey, rt: RuntimeDep
) -> dict[str, Any]:
    data = await request.body()
    info = await rt.sandboxes.get(key.namespace, sandbox_id).sandbox.write_file(path, data)
    return {"path": info.path, "size": info.size}


@router.post("/v1/sandboxes/{sandbox_id}/archive")
async def upload_archive(
    sandbox_id: str, request: Request, key: RunKey, rt: RuntimeDep, into: str = ""
) -> dict[str, Any]:
    """Extract a tar (optionally compressed) or zip archive into the workspace; an
    archive with links, absolute paths or '..' is refused whole."""
    data = await request.body()
    session = rt.sandboxes.get(key.namespace, sandbox_id)
    limit = session.spec.limits.workspace_mb * 1024 * 1024
    files = await extract(session.sandbox, data, into, limit)
    return {"items": [{"path": f.path, "size": f.size} for f in files]}


@router.delete("/v1/sandboxes/{sandbox_id}")
async def delete(sandbox_id: str, key: RunKey, rt: RuntimeDep) -> dict[str, Any]:
    await rt.sandboxes.delete(key.namespace, sandbox_id)
    return {"id": sandbox_id, "deleted": True}

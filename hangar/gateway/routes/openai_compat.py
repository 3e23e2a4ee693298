"""The OpenAI-compatible surface: agents appear as models, chat completions run them.

An agent's own tools run server side; tools the caller sends come back to the
caller as ``tool_calls``, exactly as OpenAI does, and the caller continues the
conversation with the results.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from hangar.errors import AgentNotFoundError, RunFailedError, RunWaitingApprovalError
from hangar.gateway.auth import ReadOrRunKey, RunKey, RuntimeDep
from hangar.gateway.routes.runs import follow_items, subscribed_start
from hangar.gateway.sse import SSE_HEADERS, frame
from hangar.runtime.events import Delta, ModelResponded, RunFinished, StopReason, parse
from hangar.runtime.host import Runtime
from hangar.runtime.service import RunInput
from hangar.spec.agent import Agent
from hangar.store.records import RunRecord, RunStatus
from hangar.usage import Usage

router = APIRouter(tags=["openai"])


_FAILURE_STATUS = {
    StopReason.TIMEOUT.value: 504,
    # The namespace's resources cannot work as declared (a missing Model, a Secret):
    # the request fails until they are fixed, and the fault is not the server's.
    StopReason.CONFIGURATION_ERROR.value: 422,
    StopReason.BUDGET_EXCEEDED.value: 429,
}
_LIMIT_REASONS = {StopReason.MAX_STEPS.value, StopReason.MAX_TOKENS.value}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # OpenAI clients send many optional fields; unknown ones are accepted and ignored,
    # as every OpenAI-compatible server does.
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    user: str | None = None


def _model_object(stored_name: str, namespace: str, created: float) -> dict[str, Any]:
    return {"id": stored_name, "object": "model", "created": int(created), "owned_by": namespace}


@router.get("/v1/models")
async def list_models(key: ReadOrRunKey, rt: RuntimeDep) -> dict[str, Any]:
    agents = await rt.resources.list_resources(key.namespace, Agent.KIND)
    return {
        "object": "list",
        "data": [_model_object(a.name, a.namespace, a.created_at.timestamp()) for a in agents],
    }


@router.get("/v1/models/{model}")
async def get_model(model: str, key: ReadOrRunKey, rt: RuntimeDep) -> dict[str, Any]:
    stored = await rt.resources.get_resource(key.namespace, Agent.KIND, model)
    if stored is None:
        raise AgentNotFoundError(f"no agent named {model!r} in namespace {key.namespace!r}")
    return _model_object(stored.name, stored.namespace, stored.created_at.timestamp())


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
    }


def _finish_reason(run: RunRecord) -> str:
    if run.reason == StopReason.TOOL_CALLS.value:
        return "tool_calls"
    if run.reason in _LIMIT_REASONS:
        return "length"
    return "stop"


def _raise_if_failed(run: RunRecord) -> None:
    if run.status == RunStatus.WAITING_APPROVAL:
        raise RunWaitingApprovalError(
            f"run {run.id} is waiting for a tool call to be approved",
            hint=f"approve it with `hangar approve {run.id}` (or POST /v1/runs/{run.id}/approve),"
            f" then read the answer with GET /v1/runs/{run.id}",
            details={"run": run.id},
        )
    if run.status == RunStatus.SUCCEEDED or run.reason in _LIMIT_REASONS:
        return
    error = run.error or {}
    exc = RunFailedError(
        f"run {run.id} {run.status.value}: {error.get('message', run.reason)}",
        hint=error.get("hint") or f"inspect it with `hangar runs show {run.id}`",
        details={"run": run.id, "reason": run.reason},
    )
    exc.status = _FAILURE_STATUS.get(run.reason or "", 502)  # type: ignore[misc]
    raise exc


def _completion(run: RunRecord, model: str) -> dict[str, Any]:
    message = dict((run.output or {}).get("message") or {"role": "assistant"})
    message.setdefault("content", (run.output or {}).get("text"))
    message.pop("name", None)
    return {
        "id": f"chatcmpl-{run.id}",
        "object": "chat.completion",
        "created": int(run.created_at.timestamp()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish_reason(run), "logprobs": None}
        ],
        "usage": _usage(run.usage),
        "hangar": {"run_id": run.id, "status": run.status.value, "reason": run.reason},
    }


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, key: RunKey, rt: RuntimeDep
) -> dict[str, Any] | StreamingResponse:
    # OpenAI's ``user``, the end user's id, is the run's user: their memory is used.
    run_input = RunInput(
        messages=body.messages, tools=body.tools or [], user=body.user, key_id=key.id
    )
    if body.stream:
        queue, run = await subscribed_start(rt, key.namespace, body.model, run_input)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _chunks(rt, key.namespace, run, body.model, include_usage, queue),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, "X-Hangar-Run-Id": run.id},
        )
    run = await rt.runs.start(key.namespace, body.model, run_input)
    run = await rt.runs.wait(key.namespace, run.id)
    _raise_if_failed(run)
    return _completion(run, body.model)


async def _chunks(
    rt: Runtime,
    namespace: str,
    run: RunRecord,
    model: str,
    include_usage: bool,
    queue: Any,
) -> AsyncIterator[str]:
    """Translate a run's events into ``chat.completion.chunk`` frames."""

    base = {
        "id": f"chatcmpl-{run.id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return frame({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    streamed = 0  # characters of the current step already sent as deltas
    async for item in follow_items(rt, namespace, run.id, queue):
        event = parse(item.type, item.data)
        if isinstance(event, Delta):
            streamed += len(event.text)
            yield chunk({"content": event.text})
        elif isinstance(event, ModelResponded):
            # The step's end (its request may come just before it, stored together,
            # after the deltas): the next step's deltas start from nothing.
            content = event.text
            if len(content) > streamed:
                # Deltas missed (the run executed elsewhere): send the rest at once.
                yield chunk({"content": content[streamed:]})
            streamed = 0
        elif isinstance(event, RunFinished):
            final = await rt.runs.get(namespace, run.id)
            try:
                _raise_if_failed(final)
            except RunFailedError as exc:
                yield frame(exc.to_dict())
                yield frame("[DONE]")
                return
            calls = (final.output or {}).get("message", {}).get("tool_calls") or []
            if calls:
                yield chunk({"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]})
            yield chunk({}, _finish_reason(final))
            if include_usage:
                yield frame({**base, "choices": [], "usage": _usage(final.usage)})
            yield frame("[DONE]")
            return

"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
DeepSeek, GLM, Qwen…), spoken to over HTTP directly.

Not through the ``openai`` SDK: a profile of `hangar up` serving runs put a quarter
of the server's CPU in the SDK's own layers around each call (the request built
from typed options, auth and retry wrappers, its SSE decoder, a typed object per
streamed chunk) for a request and a stream that are a POST and ``data:`` lines of
JSON. What the SDK did that matters is kept, with its semantics: the same retries
(twice, on 408, 409, 429, 5xx and connection failures, after the pause the server
asks for or a growing one), errors with the provider's message, an error reported
inside the stream raised as one. The HTTP client is the egress-checked one the
registry gives (``egress.http_client``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx2

from hangar import __version__
from hangar.errors import ModelProviderError
from hangar.models.base import estimate_request_tokens
from hangar.models.limits import answered_error, denied_error, retry_after
from hangar.models.messages import (
    Finish,
    ModelRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
)
from hangar.usage import Usage

MAX_RETRIES = 2
RETRY_STATUSES = frozenset({408, 409, 429})
"""Answers worth asking again (and every 5xx), as the official SDKs do."""
MAX_ASKED_PAUSE = 60.0
"""A server's ``Retry-After`` longer than this is not waited here (a 429's is then
``LimitedModel``'s to wait out, for every call to the Model at once)."""


class OpenAIChatModel:
    def __init__(
        self,
        name: str,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self._name = name
        self.model = model
        self.base_url = (base_url or "https://api.openai.com/v1").rstrip("/")
        self.http = http_client or httpx2.AsyncClient(timeout=600, trust_env=False)
        self.max_retries = max_retries
        self.api_key = api_key
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "User-Agent": f"hangar/{__version__}",
        }
        if api_key:  # local servers take none
            self._headers["Authorization"] = f"Bearer {api_key}"

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [t.to_openai() for t in request.tools]
        if request.settings.temperature is not None:
            body["temperature"] = request.settings.temperature
        if request.settings.max_output_tokens is not None:
            body["max_tokens"] = request.settings.max_output_tokens

        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        reason = "stop"
        async for chunk in self._chunks(json.dumps(body).encode()):
            if chunk.get("usage"):
                usage = _usage(chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if delta.get("content"):
                    yield TextDelta(delta["content"])
                for part in delta.get("tool_calls") or ():
                    slot = calls.setdefault(
                        part.get("index", 0), {"id": "", "name": "", "arguments": ""}
                    )
                    if part.get("id"):
                        slot["id"] = part["id"]
                    function = part.get("function") or {}
                    slot["name"] += function.get("name") or ""
                    slot["arguments"] += function.get("arguments") or ""
                if choice.get("finish_reason"):
                    reason = choice["finish_reason"]
        for index in sorted(calls):
            slot = calls[index]
            yield ToolCallPart(
                ToolCall(
                    id=slot["id"] or f"call_{index}", name=slot["name"], arguments=slot["arguments"]
                )
            )
        if usage is None:
            usage = Usage(estimate_request_tokens(request), 0)
        yield Finish(reason="tool_calls" if calls else reason, usage=usage)

    async def _chunks(self, body: bytes) -> AsyncIterator[dict[str, Any]]:
        """The streamed chunks of one completion, asked again (before the first chunk
        only) when the SDKs would."""
        url = f"{self.base_url}/chat/completions"
        attempt = 0
        while True:
            try:
                async with self.http.stream(
                    "POST", url, content=body, headers=self._headers
                ) as response:
                    if response.status_code >= 400:
                        await response.aread()
                        answered = _Answered(response)
                        if attempt < self.max_retries and _retryable(response):
                            attempt += 1
                            await asyncio.sleep(_pause(attempt, response.headers))
                            continue
                        hint = "check the Model's baseUrl, model id and API key"
                        raise answered_error(self.name, self.model, answered, hint)
                    async for data in _sse_data(response):
                        chunk = json.loads(data)
                        if isinstance(chunk, dict) and chunk.get("error"):
                            raise ModelProviderError(
                                f"model {self.name!r}: {self.model} failed while answering: "
                                f"{_message(chunk['error'])}",
                                hint="the provider reported an error in its stream; "
                                "try again later",
                            )
                        if isinstance(chunk, dict):
                            yield chunk
                    return
            except httpx2.TransportError as exc:
                denied = denied_error(self.name, exc)
                if denied is not None:
                    raise denied from exc
                if attempt < self.max_retries and isinstance(
                    exc, httpx2.ConnectError | httpx2.ConnectTimeout
                ):
                    attempt += 1
                    await asyncio.sleep(_pause(attempt, None))
                    continue
                raise ModelProviderError(
                    f"model {self.name!r}: cannot reach {self.base_url}: "
                    f"{type(exc).__name__}: {exc}",
                    hint="check that the endpoint is up and the Model's baseUrl is right",
                ) from exc
            except json.JSONDecodeError as exc:
                raise ModelProviderError(
                    f"model {self.name!r}: {self.model} streamed something that is not JSON: {exc}",
                    hint="check that the Model's baseUrl is an OpenAI-compatible endpoint",
                ) from exc


async def _sse_data(response: httpx2.Response) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event but ``[DONE]`` (an event's several
    ``data:`` lines joined by newlines, as the SSE format says). The body is read to
    its end, past ``[DONE]``: a connection left with unread bytes is not reused."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                data = "\n".join(lines)
                lines = []
                if data != "[DONE]":
                    yield data
            continue
        if line.startswith("data:"):
            lines.append(line[6:] if line.startswith("data: ") else line[5:])
    if lines and (data := "\n".join(lines)) != "[DONE]":
        yield data


class _Answered:
    """An error answer, as ``answered_error`` reads one (the SDKs' ``APIStatusError``)."""

    def __init__(self, response: httpx2.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        try:
            found = response.json()
        except ValueError:
            found = None
        error = found.get("error") if isinstance(found, dict) else None
        self.message = _message(error) if error else (response.text[:500] or response.reason_phrase)


def _message(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or json.dumps(error))
    return str(error)


def _retryable(response: httpx2.Response) -> bool:
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def _pause(attempt: int, headers: httpx2.Headers | None) -> float:
    """Before the ``attempt``-th retry: what the server asked (up to a minute), or half
    a second doubling to eight, less up to a quarter at random (the SDKs' schedule)."""
    asked = retry_after(dict(headers)) if headers is not None else None
    if asked is not None and 0 < asked <= MAX_ASKED_PAUSE:
        return asked
    grown = min(0.5 * 2.0 ** (attempt - 1), 8.0)
    return grown * (1 - 0.25 * random.random())


def _usage(usage: dict[str, Any]) -> Usage:
    """A chunk's ``usage`` (the last chunk's, asked for by ``include_usage``)."""
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        cached_input_tokens=int(details.get("cached_tokens") or 0),
    )

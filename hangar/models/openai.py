"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
DeepSeek, GLM, Qwen…) through the official ``openai`` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletion

from hangar.egress import first_denial
from hangar.errors import ModelProviderError
from hangar.models.base import estimate_request_tokens
from hangar.models.limits import answered_error
from hangar.models.messages import (
    Finish,
    ModelRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
)
from hangar.usage import Usage


class OpenAIChatModel:
    def __init__(
        self,
        name: str,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        client: openai.AsyncOpenAI | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self._name = name
        self.model = model
        # Local servers take any key; the SDK insists on one being set (and would read
        # the server's OPENAI_API_KEY otherwise).
        self.client = client or openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key or "unused", max_retries=2, http_client=http_client
        )

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": [m.to_openai() for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            kwargs["tools"] = [t.to_openai() for t in request.tools]
        if request.settings.temperature is not None:
            kwargs["temperature"] = request.settings.temperature
        if request.settings.max_output_tokens is not None:
            kwargs["max_tokens"] = request.settings.max_output_tokens

        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        reason = "stop"
        try:
            # The SDK's own request, less ``chat.completions.create``'s walk over the
            # parameters to turn typed dicts into JSON (a ninth of a run's CPU in
            # `hangar up`): ours are JSON already. Its chunks come as the JSON they
            # are (``AsyncStream[object]``): building the SDK's typed chunk of each
            # took a fifth of a call's CPU, to read five fields. Retries, the stream's
            # SSE and its errors are still the SDK's.
            stream = await self.client.post(
                "/chat/completions",
                body=kwargs,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async for chunk in stream:
                if not isinstance(chunk, dict):
                    continue
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
        except openai.APIStatusError as exc:
            hint = "check the Model's baseUrl, model id and API key"
            raise answered_error(self.name, self.model, exc, hint) from exc
        except openai.APIError as exc:
            denied = first_denial(exc)
            if denied is not None:
                raise ModelProviderError(
                    f"model {self.name!r}: {denied.message}", hint=denied.hint
                ) from exc
            if not isinstance(exc, openai.APIConnectionError):  # said inside the stream
                raise ModelProviderError(
                    f"model {self.name!r}: {self.model} failed while answering: {exc.message}",
                    hint="the provider reported an error in its stream; try again later",
                ) from exc
            raise ModelProviderError(
                f"model {self.name!r}: cannot reach {self.client.base_url}: {exc}",
                hint="check that the endpoint is up and the Model's baseUrl is right",
            ) from exc
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


def _usage(usage: dict[str, Any]) -> Usage:
    """A chunk's ``usage`` (the last chunk's, asked for by ``include_usage``)."""
    details = usage.get("prompt_tokens_details") or {}
    return Usage(
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
        cached_input_tokens=int(details.get("cached_tokens") or 0),
    )

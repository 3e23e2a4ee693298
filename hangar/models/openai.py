"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
DeepSeek, GLM, Qwen…) through the official ``openai`` SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

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
            # `hangar up`): ours are JSON already. Retries and errors are the SDK's.
            stream = await self.client.post(
                "/chat/completions",
                body=kwargs,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            async for chunk in stream:
                if chunk.usage is not None:
                    details = getattr(chunk.usage, "prompt_tokens_details", None)
                    usage = Usage(
                        chunk.usage.prompt_tokens,
                        chunk.usage.completion_tokens,
                        cached_input_tokens=getattr(details, "cached_tokens", 0) or 0,
                    )
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        yield TextDelta(delta.content)
                    for part in delta.tool_calls or []:
                        slot = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                        if part.id:
                            slot["id"] = part.id
                        if part.function is not None:
                            slot["name"] += part.function.name or ""
                            slot["arguments"] += part.function.arguments or ""
                    if choice.finish_reason:
                        reason = choice.finish_reason
        except openai.APIStatusError as exc:
            hint = "check the Model's baseUrl, model id and API key"
            raise answered_error(self.name, self.model, exc, hint) from exc
        except openai.APIError as exc:
            denied = first_denial(exc)
            if denied is not None:
                raise ModelProviderError(
                    f"model {self.name!r}: {denied.message}", hint=denied.hint
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

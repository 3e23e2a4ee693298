"""Anthropic's Messages API through the official ``anthropic`` SDK.

Translates our OpenAI-shaped messages at the edge: system messages become the
``system`` parameter, tool results become ``tool_result`` blocks of a user turn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2

from hangar.errors import ModelProviderError
from hangar.models.limits import answered_error, denied_error
from hangar.models.messages import (
    Finish,
    Message,
    ModelRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
)
from hangar.usage import Usage

DEFAULT_MAX_TOKENS = 4096
_STOP_REASONS = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


def to_anthropic(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    """Split off the system prompt and fold tool results into user turns."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, block: dict[str, Any]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].append(block)
        else:
            out.append({"role": role, "content": [block]})

    for message in messages:
        if message.role == "system":
            system.append(message.content or "")
        elif message.role == "tool":
            add(
                "user",
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content or "",
                },
            )
        elif message.role == "assistant":
            if message.content:
                add("assistant", {"type": "text", "text": message.content})
            for call in message.tool_calls:
                try:
                    arguments = call.parsed_arguments()
                except ValueError:
                    arguments = {}
                add(
                    "assistant",
                    {"type": "tool_use", "id": call.id, "name": call.name, "input": arguments},
                )
        else:
            add("user", {"type": "text", "text": message.content or ""})
    return "\n\n".join(system), out


class AnthropicChatModel:
    def __init__(
        self,
        name: str,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self._name = name
        self.model = model
        self.client = anthropic.AsyncAnthropic(
            base_url=base_url, api_key=api_key or "unused", max_retries=2, http_client=http_client
        )

    @property
    def name(self) -> str:
        return self._name

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        system, messages = to_anthropic(request.messages)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.settings.max_output_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if system:
            kwargs["system"] = system
        if request.tools:
            kwargs["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
        if request.settings.temperature is not None:
            kwargs["temperature"] = request.settings.temperature

        input_tokens = output_tokens = cached_tokens = 0
        reason = "stop"
        blocks: dict[int, dict[str, str]] = {}
        try:
            stream = await self.client.messages.create(**kwargs)
            async for event in stream:
                if event.type == "message_start":
                    # Anthropic counts cache reads and writes apart from input_tokens;
                    # Hangar's input_tokens are all of them, cached_input_tokens the reads.
                    used = event.message.usage
                    cached_tokens = getattr(used, "cache_read_input_tokens", 0) or 0
                    written = getattr(used, "cache_creation_input_tokens", 0) or 0
                    input_tokens = used.input_tokens + cached_tokens + written
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta":
                        yield TextDelta(event.delta.text)
                    elif event.delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index]["json"] += event.delta.partial_json
                elif event.type == "message_delta":
                    output_tokens = event.usage.output_tokens
                    reason = _STOP_REASONS.get(event.delta.stop_reason or "", "stop")
        except anthropic.APIStatusError as exc:
            hint = "check the Model's model id and API key"
            raise answered_error(self.name, self.model, exc, hint) from exc
        except anthropic.APIError as exc:
            denied = denied_error(self.name, exc)
            if denied is not None:
                raise denied from exc
            raise ModelProviderError(f"model {self.name!r}: {exc}") from exc
        for index in sorted(blocks):
            block = blocks[index]
            arguments = block["json"] or "{}"
            json.loads(arguments)  # Anthropic guarantees JSON; fail loudly if not
            yield ToolCallPart(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
        yield Finish(
            reason=reason,
            usage=Usage(input_tokens, output_tokens, cached_input_tokens=cached_tokens),
        )

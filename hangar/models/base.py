"""The ``ChatModel`` protocol: the one seam between the agent loop and any provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from hangar.errors import ModelProviderError
from hangar.models.messages import (
    Finish,
    Message,
    ModelRequest,
    ModelResponse,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
)
from hangar.usage import Usage


class ChatModel(Protocol):
    """A model that streams text and tool calls and reports its token usage."""

    @property
    def name(self) -> str: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        """Stream the reply. Ends with exactly one ``Finish``."""
        ...


async def complete(
    model: ChatModel,
    request: ModelRequest,
    on_delta: Callable[[str], Awaitable[None]] | None = None,
) -> ModelResponse:
    """Consume a stream into one response, passing each text delta to ``on_delta``."""
    text: list[str] = []
    calls: list[ToolCall] = []
    finish: Finish | None = None
    async for event in model.stream(request):
        if isinstance(event, TextDelta):
            text.append(event.text)
            if on_delta is not None:
                await on_delta(event.text)
        elif isinstance(event, ToolCallPart):
            calls.append(event.call)
        else:
            finish = event
    if finish is None:
        raise ModelProviderError(f"model {model.name!r} ended its stream without finishing")
    message = Message(role="assistant", content="".join(text) or None, tool_calls=tuple(calls))
    reason = "tool_calls" if calls else finish.reason
    return ModelResponse(message=message, usage=finish.usage, finish_reason=reason)


def estimate_tokens(text: str | None) -> int:
    """A provider-neutral estimate (about four characters a token) for providers that
    report no usage; deterministic, so scripted runs have stable token counts."""
    if not text:
        return 0
    return max(1, (len(text) + 3) // 4)


def estimate_request_tokens(request: ModelRequest) -> int:
    total = 0
    for message in request.messages:
        total += 4 + estimate_tokens(message.content)
        for call in message.tool_calls:
            total += estimate_tokens(call.name) + estimate_tokens(call.arguments)
    for tool in request.tools:
        total += estimate_tokens(tool.name) + estimate_tokens(tool.description) + 10
    return total


__all__ = ["ChatModel", "Usage", "complete", "estimate_request_tokens", "estimate_tokens"]

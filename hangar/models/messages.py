"""Messages, tool calls and stream events: the vocabulary every provider speaks.

The shapes follow OpenAI's chat format, since it is what most endpoints speak
and what our own OpenAI-compatible surface receives; providers with another
format (Anthropic) translate at their edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from hangar.errors import InvalidRequestError
from hangar.usage import Usage

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text exactly as the model produced it; may be invalid JSON."""

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; raises ValueError with the reason when they are not."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"arguments are not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
        return value

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Message:
    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role != "tool":
            out["name"] = self.name
        return out

    @classmethod
    def from_openai(cls, data: Any, where: str = "message") -> Message:
        """Parse one OpenAI-format message, naming what is wrong and where."""
        if not isinstance(data, dict):
            raise InvalidRequestError(f"{where} must be an object")
        role = data.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "tool"):
            raise InvalidRequestError(
                f"{where}.role must be one of system, user, assistant, tool; got {role!r}"
            )
        content = _text_content(data.get("content"), f"{where}.content")
        calls: list[ToolCall] = []
        for i, raw in enumerate(data.get("tool_calls") or []):
            fn = raw.get("function") if isinstance(raw, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequestError(f"{where}.tool_calls[{i}] needs function.name")
            args = fn.get("arguments", "{}")
            calls.append(
                ToolCall(
                    id=str(raw.get("id") or f"call_{i}"),
                    name=fn["name"],
                    arguments=args if isinstance(args, str) else json.dumps(args),
                )
            )
        tool_call_id = data.get("tool_call_id")
        if role == "tool" and not isinstance(tool_call_id, str):
            raise InvalidRequestError(f"{where}.tool_call_id is required for role 'tool'")
        return cls(
            role=role,
            content=content,
            tool_calls=tuple(calls),
            tool_call_id=tool_call_id,
            name=data.get("name") if isinstance(data.get("name"), str) else None,
        )


def _text_content(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise InvalidRequestError(
                    f"{where}[{i}]: only text content parts are supported",
                    hint="send images and audio as text references for now",
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    raise InvalidRequestError(f"{where} must be a string or a list of text parts")


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


@dataclass(frozen=True)
class ModelSettings:
    temperature: float | None = None
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class ModelRequest:
    messages: tuple[Message, ...]
    tools: tuple[ToolDefinition, ...] = ()
    settings: ModelSettings = field(default_factory=ModelSettings)


# --- what a model streams back ----------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str
    type: Literal["text_delta"] = "text_delta"


@dataclass(frozen=True)
class ToolCallPart:
    """A complete tool call; providers assemble streamed argument fragments first."""

    call: ToolCall
    type: Literal["tool_call"] = "tool_call"


@dataclass(frozen=True)
class Finish:
    reason: str
    usage: Usage
    type: Literal["finish"] = "finish"


StreamEvent = TextDelta | ToolCallPart | Finish


@dataclass(frozen=True)
class ModelResponse:
    message: Message
    usage: Usage
    finish_reason: str

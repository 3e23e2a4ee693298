"""Models: the ``ChatModel`` protocol and its providers (openai, anthropic, local, scripted)."""

from hangar.models.base import ChatModel, complete
from hangar.models.messages import (
    Finish,
    Message,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
    ToolDefinition,
)
from hangar.models.registry import build_chat_model

__all__ = [
    "ChatModel",
    "Finish",
    "Message",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallPart",
    "ToolDefinition",
    "build_chat_model",
    "complete",
]

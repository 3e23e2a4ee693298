"""A deterministic model that replies from a script, for tests and benchmarks.

It is stateless: the reply to a request is step *n* of the script, where *n*
counts the assistant turns since the last user message. So concurrent runs,
resumed runs and repeated requests all get the same answers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from hangar.errors import ModelProviderError
from hangar.models.base import estimate_request_tokens, estimate_tokens
from hangar.models.messages import (
    Finish,
    ModelRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
)
from hangar.spec.model import ScriptStep
from hangar.usage import Usage

_WORD = re.compile(r"\S+\s*|\s+")


class ScriptedModel:
    def __init__(self, name: str, script: list[ScriptStep]) -> None:
        if not script:
            raise ValueError("a scripted model needs at least one step")
        self._name = name
        self.script = script

    @property
    def name(self) -> str:
        return self._name

    def step_for(self, request: ModelRequest) -> tuple[int, ScriptStep]:
        turn = 0
        for message in reversed(request.messages):
            if message.role == "user":
                break
            if message.role == "assistant":
                turn += 1
        index = min(turn, len(self.script) - 1)
        return turn, self.script[index]

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        turn, step = self.step_for(request)
        if step.delay_seconds:
            await asyncio.sleep(step.delay_seconds)
        if step.error is not None:
            raise ModelProviderError(f"scripted model {self.name!r}: {step.error}")
        output = 0
        if step.text:
            for match in _WORD.finditer(step.text):
                yield TextDelta(match.group(0))
            output += estimate_tokens(step.text)
        for i, scripted in enumerate(step.tool_calls):
            arguments = json.dumps(scripted.arguments)
            output += estimate_tokens(scripted.name) + estimate_tokens(arguments)
            yield ToolCallPart(
                ToolCall(id=f"call_{turn}_{i}", name=scripted.name, arguments=arguments)
            )
        usage = Usage(
            input_tokens=step.input_tokens
            if step.input_tokens is not None
            else estimate_request_tokens(request),
            output_tokens=step.output_tokens if step.output_tokens is not None else output,
            cached_input_tokens=step.cached_input_tokens,
        )
        yield Finish(reason="tool_calls" if step.tool_calls else "stop", usage=usage)

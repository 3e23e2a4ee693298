"""What tracing costs: the same run through the gateway with telemetry off, with
spans stored only, and with OTLP export on as well, side by side in one run.

``hangar up`` processes (SQLite) run the same agent: a scripted model that calls
``current_time`` once, then answers (two model calls, one tool call). Requests
alternate between the servers one by one, so machine noise falls on all alike. The
OTLP mode exports to a receiver in this process that accepts and drops each batch.

Two processes of the same build and mode differ by up to 3% on their own (where
their memory lands, which core they get): a single process per mode put that noise
on the ratio. So each mode runs in ``INSTANCES`` processes whose runs are pooled,
every server shares one core and this client keeps the other, and every server gets
the same hash seed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.agent_loop import free_port, wait_http
from bench.sandboxes import percentile
from hangar.telemetry.stored import FLUSH_SECONDS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODES = ("off", "stored", "otlp")
INSTANCES = 2


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def start(
    mode: str, otlp_url: str, cpus: set[int] | None = None
) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    home = Path(tempfile.mkdtemp(prefix=f"hangar-bench-telemetry-{mode}-"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "HANGAR_HOME": str(home),
        "HANGAR_PORT": str(port),
        "HANGAR_TELEMETRY": mode,
        "PYTHONHASHSEED": "0",
    }
    if mode == "otlp":  # only there: with the variable set, `stored` exports as well
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_url
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "hangar"), "up"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc)
    key = (home / "admin.key").read_text().strip()
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    step = {"toolCalls": [{"name": "current_time", "arguments": {}}]}
    client.post(
        "/v1/apply",
        json=[
            {
                "apiVersion": "hangar.dev/v1alpha1",
                "kind": "Model",
                "metadata": {"name": "script"},
                "spec": {"provider": "scripted", "script": [step, {"text": "It is noon."}]},
            },
            {
                "apiVersion": "hangar.dev/v1alpha1",
                "kind": "Agent",
                "metadata": {"name": "clock"},
                "spec": {"model": "script", "tools": [{"builtin": "current_time"}]},
            },
        ],
    ).raise_for_status()
    return proc, client


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used (user and system, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(runs: int, rounds: int = 5) -> None:
    sink = HTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    cores = sorted(os.sched_getaffinity(0))
    client_cpu, server_cpus = ({cores[0]}, {cores[1]}) if len(cores) >= 2 else (None, None)
    before_affinity = os.sched_getaffinity(0)
    if client_cpu:
        os.sched_setaffinity(0, client_cpu)
    servers: dict[tuple[str, int], tuple[subprocess.Popen[bytes], httpx.Client]] = {}
    try:
        for mode in MODES:
            for i in range(INSTANCES):
                servers[mode, i] = start(mode, f"http://127.0.0.1:{sink.server_port}", server_cpus)
        keys = list(servers)

        def once(key: tuple[str, int]) -> float:
            client = servers[key][1]
            start = time.perf_counter()
            run = client.post("/v1/agents/clock/runs", json={"input": "time?"}).json()
            elapsed = (time.perf_counter() - start) * 1000
            assert run["status"] == "succeeded", run
            return elapsed

        for key in keys:
            for _ in range(20):
                once(key)
        cpu_before = {key: cpu_seconds(servers[key][0].pid) for key in keys}
        samples: dict[str, list[float]] = {mode: [] for mode in MODES}
        per_round = max(1, runs // rounds // INSTANCES)
        for r in range(rounds):
            order = keys if r % 2 == 0 else keys[::-1]
            for _ in range(per_round):
                for key in order:
                    samples[key[0]].append(once(key))
        time.sleep(2 * FLUSH_SECONDS)  # the last spans stored, their cost counted
        cpu = {
            mode: sum(
                cpu_seconds(servers[mode, i][0].pid) - cpu_before[mode, i] for i in range(INSTANCES)
            )
            / len(samples[mode])
            * 1000
            for mode in MODES
        }
        stored = servers["stored", 0][1]
        traced = stored.get("/v1/runs", params={"limit": 1}).json()["items"][0]
        spans = len(stored.get(f"/v1/runs/{traced['id']}/trace").json()["spans"])
    finally:
        for proc, client in servers.values():
            client.close()
            proc.terminate()
            proc.wait(30)
        sink.shutdown()
        os.sched_setaffinity(0, before_affinity)

    p50 = {mode: statistics.median(values) for mode, values in samples.items()}
    p99 = {mode: percentile(values, 0.99) for mode, values in samples.items()}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(
        f"| {mode} | {p50[mode]:.2f} | {p99[mode]:.2f} | {p50[mode] / p50['off']:.3f}× "
        f"| {cpu[mode]:.2f} | {cpu[mode] / cpu['off']:.3f}× |"
        for mode in MODES
    )
    report = f"""# Telemetry overhead

{stamp}, {platform.machine()}, {os.cpu_count()} cores; {len(samples["off"])} runs per mode
over {INSTANCES} server processes each, in {rounds} alternating rounds (servers on one core,
this client on the other, one hash seed). One run: POST /v1/agents/clock/runs to
`hangar up` (SQLite), two scripted model calls and one tool call; {spans} spans in its
trace when traced (the request, the run, model and tool calls, the store writes).

| telemetry | p50 ms | p99 ms | p50 ÷ off | server CPU ms per run | CPU ÷ off |
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "telemetry.md").write_text(report)
    (RESULTS / "telemetry.json").write_text(
        json.dumps(
            {"when": stamp, "p50_ms": p50, "p99_ms": p99, "cpu_ms": cpu, "spans": spans},
            indent=2,
        )
    )
    print(report)

"""Prometheus metrics at ``/metrics``: counters the worker bumps as runs go (tokens,
cost, tool calls, runs finished, step latencies) and gauges read at scrape time from
the store and the live parts (runs by state, queue depth, sandbox pools, MCP
upstreams).

Each runtime has its own registry (several runtimes in one process stay apart).
Counters are per process, as Prometheus expects: it sums them across replicas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from hangar.usage import Usage

UNKNOWN_TOOL = "unknown"
"""The tool label of a call to a tool the run does not have: a model may name anything,
and each name would be a series of its own."""
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tokens = Counter(
            "hangar_model_tokens",
            "Tokens of model calls, by namespace, agent, model and type (input, cached_input, "
            "output).",
            ["namespace", "agent", "model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "hangar_model_cost_usd",
            "Cost of model calls in US dollars, from the Model's prices.",
            ["namespace", "agent", "model"],
            registry=r,
        )
        self.model_calls = Counter(
            "hangar_model_calls", "Model calls.", ["namespace", "agent", "model"], registry=r
        )
        self.model_waits = Counter(
            "hangar_model_waits",
            "Model calls that had to wait, by reason: rate_limited (the provider answered "
            "429), max_concurrency, requests_per_minute, tokens_per_minute (the Model's "
            "limits).",
            ["namespace", "agent", "model", "reason"],
            registry=r,
        )
        self.model_waiting = Gauge(
            "hangar_model_waiting",
            "Model calls waiting now in this process, by Model and reason.",
            ["namespace", "model", "reason"],
            registry=r,
        )
        self.tool_calls = Counter(
            "hangar_tool_calls",
            "Tool calls by outcome (ok, error, denied, approval_denied, interrupted).",
            ["namespace", "agent", "tool", "outcome"],
            registry=r,
        )
        self.runs_finished = Counter(
            "hangar_runs_finished",
            "Runs that ended, by status and reason.",
            ["namespace", "agent", "status", "reason"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "hangar_step_duration_seconds",
            "Duration of run steps: model calls and tool calls.",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=r,
        )
        self.run_seconds = Histogram(
            "hangar_run_duration_seconds",
            "Wall time of runs, by where it went (total, model, tools, hangar).",
            ["part"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.runs = Gauge(
            "hangar_runs",
            "Runs in the store by namespace and state.",
            ["namespace", "state"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "hangar_queue_depth",
            "Runs waiting for a worker, by namespace: what an autoscaler reads.",
            ["namespace"],
            registry=r,
        )
        self.sandbox_pool = Gauge(
            "hangar_sandbox_pool_size",
            "Warm sandboxes ready per pool (backend and template hash).",
            ["pool"],
            registry=r,
        )
        self.sandbox_sessions = Gauge(
            "hangar_sandbox_sessions", "Live sandbox sessions.", registry=r
        )
        self.mcp_up = Gauge(
            "hangar_mcp_upstream_up",
            "1 when the MCP server is connected and ready, else 0.",
            ["namespace", "server", "state"],
            registry=r,
        )
        self.mcp_tools = Gauge(
            "hangar_mcp_upstream_tools",
            "Tools an MCP server offers.",
            ["namespace", "server"],
            registry=r,
        )
        self.mcp_restarts = Gauge(
            "hangar_mcp_upstream_restarts",
            "Restarts of an MCP server's connection.",
            ["namespace", "server"],
            registry=r,
        )

    # --- as runs go --------------------------------------------------------------------

    def model_call(
        self, namespace: str, agent: str, model: str, usage: Usage, seconds: float
    ) -> None:
        labels = (namespace, agent, model)
        self.tokens.labels(*labels, "input").inc(usage.input_tokens)
        self.tokens.labels(*labels, "cached_input").inc(usage.cached_input_tokens)
        self.tokens.labels(*labels, "output").inc(usage.output_tokens)
        self.cost.labels(*labels).inc(usage.cost)
        self.model_calls.labels(*labels).inc()
        self.step_seconds.labels("model").observe(seconds)

    def model_waited(self, namespace: str, agent: str, model: str, reason: str) -> None:
        self.model_waits.labels(namespace, agent, model, reason).inc()

    def tool_call(
        self, namespace: str, agent: str, tool: str, outcome: str, seconds: float
    ) -> None:
        self.tool_calls.labels(namespace, agent, tool, outcome).inc()
        self.step_seconds.labels("tool").observe(seconds)

    def run_finished(
        self,
        namespace: str,
        agent: str,
        status: str,
        reason: str,
        timing: dict[str, float] | None,
    ) -> None:
        self.runs_finished.labels(namespace, agent, status, reason).inc()
        for part in ("total", "model", "tools", "hangar"):
            if timing and f"{part}_ms" in timing:
                self.run_seconds.labels(part).observe(timing[f"{part}_ms"] / 1000)

    # --- at scrape time ---------------------------------------------------------------

    def exposition(
        self,
        *,
        runs: Iterable[tuple[str, str, int]],
        pools: Mapping[str, int],
        sandbox_sessions: int,
        servers: Mapping[tuple[str, str], Mapping[str, Any]],
        model_waiting: Iterable[tuple[str, str, str, int]] = (),
    ) -> bytes:
        """The scrape: counters kept as things happened, and gauges set from what the
        caller read just now (runs by namespace and state, ready sandboxes by pool, live
        sandbox sessions, MCP servers by (namespace, name), model calls waiting by
        (namespace, model, reason))."""
        self.model_waiting.clear()
        for namespace, model, reason, calls in model_waiting:
            self.model_waiting.labels(namespace, model, reason).set(calls)
        self.runs.clear()
        self.queue_depth.clear()
        for namespace, state, count in runs:
            self.runs.labels(namespace, state).set(count)
            if state == "queued":
                self.queue_depth.labels(namespace).set(count)
        self.sandbox_pool.clear()
        for pool, ready in pools.items():
            self.sandbox_pool.labels(pool).set(ready)
        self.sandbox_sessions.set(sandbox_sessions)
        self.mcp_up.clear()
        self.mcp_tools.clear()
        self.mcp_restarts.clear()
        for (namespace, server), status in servers.items():
            self.mcp_up.labels(namespace, server, status["state"]).set(
                1 if status["state"] == "ready" else 0
            )
            self.mcp_tools.labels(namespace, server).set(status["tools"])
            self.mcp_restarts.labels(namespace, server).set(status["restarts"])
        return generate_latest(self.registry)

"""Where a run's time went: the model, its tools, or Hangar itself, in the run's
summary, its final event, its span and `hangar runs show`."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from hangar.cli.main import app
from tests.helpers import ServerThread, agent, scripted_model


def test_a_run_says_how_long_the_model_the_tools_and_hangar_took(
    server: ServerThread, api: httpx.Client
) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model(
                "slow",
                {"toolCalls": [{"name": "current_time", "arguments": {}}], "delaySeconds": 0.3},
                {"text": "noon", "delaySeconds": 0.2},
            ),
            agent("clock", "slow", tools=[{"builtin": "current_time"}]),
        ],
    ).raise_for_status()
    run = api.post("/v1/agents/clock/runs", json={"input": "time?"}).json()
    timing = run["timing"]
    assert set(timing) == {"total_ms", "model_ms", "tools_ms", "hangar_ms", "queued_ms"}
    assert timing["model_ms"] >= 500  # the two model calls slept 0.3 s and 0.2 s
    assert timing["tools_ms"] > 0
    parts = timing["model_ms"] + timing["tools_ms"] + timing["hangar_ms"]
    assert abs(parts - timing["total_ms"]) < 0.01  # the three parts make the whole
    events = api.get(f"/v1/runs/{run['id']}/events").json()["items"]
    assert events[-1]["type"] == "run_finished" and events[-1]["data"]["timing"] == timing
    spans = api.get(f"/v1/runs/{run['id']}/trace").json()["spans"]
    invoke = next(s for s in spans if s["name"] == "invoke_agent clock")
    assert invoke["attributes"]["hangar.time.model_ms"] == timing["model_ms"]
    # Stored only (no exporter), store writes are written as spans directly, still
    # children of the span they ran in (the run's, a model call's, a tool call's),
    # within it, with their own ids.
    writes = [s for s in spans if s["name"] == "store append_event"]
    # All but run_started (stored by the claim, before the run's span), and final and
    # run_finished (stored together by the run's end, which has a span of its own: it
    # claims the worker slot's next run too).
    assert len(writes) == len(events) - 3
    assert [s["name"] for s in spans].count("store finish_and_claim") == 1
    by_id = {s["spanId"]: s for s in spans}
    for write in writes:
        parent = by_id[write["parentSpanId"]]
        assert parent["name"].split()[0] in ("invoke_agent", "chat", "execute_tool")
        assert parent["startTimeUnixNano"] <= write["startTimeUnixNano"]
        assert write["endTimeUnixNano"] <= parent["endTimeUnixNano"]
    assert all(
        w["attributes"] == {"db.system.name": "sqlite", "hangar.namespace": "default"}
        for w in writes
    )
    assert len({s["spanId"] for s in spans}) == len(spans)
    shown = CliRunner().invoke(
        app, ["--url", server.url, "--api-key", server.admin_key, "runs", "show", run["id"]]
    )
    assert shown.exit_code == 0, shown.output
    assert f"model {timing['model_ms']:.1f} ms" in shown.output
    step_lines = [line for line in shown.output.splitlines() if "step " in line]
    assert len(step_lines) == 2 and all("model" in line and "hangar" in line for line in step_lines)
    spans = CliRunner().invoke(
        app,
        ["--url", server.url, "--api-key", server.admin_key, "runs", "show", run["id"], "--trace"],
        env={"COLUMNS": "200"},
    )
    assert spans.exit_code == 0, spans.output
    lines = spans.output.splitlines()
    agent_line = next(i for i, line in enumerate(lines) if "invoke_agent clock" in line)
    chat_line = next(i for i, line in enumerate(lines) if "chat slow" in line)
    assert chat_line > agent_line and "tokens" in lines[chat_line]

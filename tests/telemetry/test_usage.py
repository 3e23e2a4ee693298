"""The usage ledger: every model call's tokens and cost, summed by agent, model, run
or day over REST (JSON and CSV) and `hangar usage`; and /metrics, whose counters
match the ledger."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from hangar.cli.main import app
from tests.helpers import ServerThread, agent, scripted_model

PRICES = {
    "inputPerMillion": 1_000_000,
    "outputPerMillion": 2_000_000,
    "cachedInputPerMillion": 500_000,
}


def step(text: str, inputs: int, outputs: int, cached: int = 0) -> dict[str, Any]:
    return {
        "text": text,
        "inputTokens": inputs,
        "outputTokens": outputs,
        "cachedInputTokens": cached,
    }


def setup(api: httpx.Client) -> list[str]:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("big", step("a", 100, 10, cached=40), pricing=PRICES),
            scripted_model("small", step("b", 7, 3), pricing=PRICES),
            agent("writer", "big"),
            agent("helper", "small"),
        ],
    ).raise_for_status()
    runs = []
    for name in ("writer", "writer", "helper"):
        run = api.post(f"/v1/agents/{name}/runs", json={"input": "go"}).json()
        assert run["status"] == "succeeded", run
        runs.append(run["id"])
    return runs


def test_the_ledger_sums_tokens_and_cost_by_agent_model_run_and_day(api: httpx.Client) -> None:
    runs = setup(api)
    # 100 input of which 40 cached: 60 x $1 + 40 x $0.5 + 10 output x $2 = $100 per call.
    by_agent = api.get("/v1/usage", params={"by": "agent"}).json()["items"]
    assert by_agent == [
        {"agent": "helper", "calls": 1, "input_tokens": 7, "cached_input_tokens": 0,
         "output_tokens": 3, "cost": 13.0},
        {"agent": "writer", "calls": 2, "input_tokens": 200, "cached_input_tokens": 80,
         "output_tokens": 20, "cost": 200.0},
    ]  # fmt: skip
    by_model = api.get("/v1/usage", params={"by": "model"}).json()["items"]
    assert [(r["model"], r["calls"]) for r in by_model] == [("big", 2), ("small", 1)]
    by_run = api.get("/v1/usage", params={"by": "run", "agent": "writer"}).json()["items"]
    assert sorted(r["run"] for r in by_run) == sorted(runs[:2])
    run = api.get(f"/v1/runs/{runs[0]}").json()
    assert run["usage"]["cost"] == by_run[0]["cost"] == 100.0  # the run and the ledger agree
    days = api.get("/v1/usage", params={"by": "day,agent"}).json()["items"]
    assert len({r["day"] for r in days}) == 1 and len(days) == 2
    assert api.get("/v1/usage", params={"by": "agent", "since": "2999-01-01"}).json()["items"] == []
    # CSV, for spreadsheets.
    text = api.get("/v1/usage", params={"by": "agent", "format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["agent"], r["cost"]) for r in rows] == [("helper", "13.0"), ("writer", "200.0")]
    # Bad filters say what is wrong.
    bad = api.get("/v1/usage", params={"by": "colour"})
    assert bad.status_code == 422 and "cannot group usage by 'colour'" in bad.text
    assert api.get("/v1/usage", params={"since": "yesterday"}).status_code == 422


def test_hangar_usage_prints_the_ledger(server: ServerThread, api: httpx.Client) -> None:
    setup(api)
    base = ["--url", server.url, "--api-key", server.admin_key, "usage"]
    table = CliRunner().invoke(app, [*base, "--by", "model"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "big" in table.output and "200.000000" in table.output
    as_csv = CliRunner().invoke(app, [*base, "-o", "csv"])
    assert as_csv.output.splitlines()[0] == (
        "agent,calls,input_tokens,cached_input_tokens,output_tokens,cost"
    )


def samples(text: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def test_metrics_parse_and_their_counters_match_the_ledger(
    server: ServerThread, api: httpx.Client
) -> None:
    setup(api)
    scraped = httpx.get(f"{server.url}/metrics")  # no key: scrapers have none
    assert scraped.status_code == 200
    metrics = samples(scraped.text)
    ledger = {r["agent"]: r for r in api.get("/v1/usage", params={"by": "agent"}).json()["items"]}

    def value(name: str, agent: str, **labels: str) -> float:
        return sum(
            s.value
            for s in metrics[name]
            if s.labels["agent"] == agent and all(s.labels[k] == v for k, v in labels.items())
        )

    for name, row in ledger.items():
        assert value("hangar_model_tokens_total", name, type="input") == row["input_tokens"]
        assert (
            value("hangar_model_tokens_total", name, type="cached_input")
            == row["cached_input_tokens"]
        )
        assert value("hangar_model_tokens_total", name, type="output") == row["output_tokens"]
        assert value("hangar_model_cost_usd_total", name) == row["cost"]
        assert value("hangar_model_calls_total", name) == row["calls"]
        assert value("hangar_runs_finished_total", name, status="succeeded") == row["calls"]
    states = {s.labels["state"]: s.value for s in metrics["hangar_runs"]}
    assert states["succeeded"] == 3
    assert any(s.labels["kind"] == "model" for s in metrics["hangar_step_duration_seconds_count"])
    assert metrics["hangar_sandbox_sessions"][0].value == 0

"""An agent computes in its run's sandbox: state and files carry from step to step."""

from __future__ import annotations

import json

import httpx

from tests.helpers import ServerThread, agent, doc, scripted_model, tool_step, wait_until

SANDBOX_TOOLS = [{"builtin": t} for t in ("run_python", "read_file", "write_file", "run_shell")]


def test_an_agent_computes_writes_a_file_and_reads_it_back(
    server: ServerThread, api: httpx.Client
) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model(
                "analyst",
                tool_step(
                    "run_python",
                    code="x = sum(range(10))\nopen('result.txt', 'w').write(str(x))\nx",
                ),
                tool_step("read_file", path="result.txt"),
                tool_step("run_python", code="x * 2"),
                {"text": "The sum is 45, doubled 90."},
            ),
            agent("analyst", "analyst", tools=SANDBOX_TOOLS),
        ],
    )
    run = api.post("/v1/agents/analyst/runs", json={"input": "Sum 0..9"}).json()
    assert run["status"] == "succeeded", run
    results = [
        e["data"]
        for e in api.get(f"/v1/runs/{run['id']}/events").json()["items"]
        if e["type"] == "tool_result"
    ]
    first = json.loads(results[0]["content"])
    assert (first["status"], first["value"], first["files"]) == ("ok", "45", ["result.txt"])
    assert results[1]["content"] == "45"
    assert json.loads(results[2]["content"])["value"] == "90"  # the variable survived
    # The run's sandbox is gone with the run.
    wait_until(lambda: not server.runtime.sandboxes.sessions, what="sandbox cleanup")


def test_a_named_template_sets_the_limits(server: ServerThread, api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            doc("SandboxTemplate", "tight", {"backend": "bwrap", "limits": {"wallSeconds": 1}}),
            scripted_model(
                "spinner", tool_step("run_python", code="while True: pass"), {"text": "gave up"}
            ),
            agent("spinner", "spinner", tools=SANDBOX_TOOLS, sandbox="tight"),
        ],
    )
    run = api.post("/v1/agents/spinner/runs", json={"input": "spin"}).json()
    assert run["status"] == "succeeded"
    (result,) = [
        e["data"]
        for e in api.get(f"/v1/runs/{run['id']}/events").json()["items"]
        if e["type"] == "tool_result"
    ]
    assert json.loads(result["content"])["status"] == "timeout"


def test_a_missing_template_is_an_error_the_model_sees(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=[
            scripted_model("lost", tool_step("run_python", code="1"), {"text": "no sandbox"}),
            agent("lost", "lost", tools=SANDBOX_TOOLS, sandbox="ghost"),
        ],
    )
    run = api.post("/v1/agents/lost/runs", json={"input": "x"}).json()
    (result,) = [
        e["data"]
        for e in api.get(f"/v1/runs/{run['id']}/events").json()["items"]
        if e["type"] == "tool_result"
    ]
    assert result["is_error"] and "SandboxTemplate 'ghost' not found" in result["content"]

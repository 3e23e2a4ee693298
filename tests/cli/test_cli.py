"""The `hangar` command, run as a real subprocess against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ServerThread, agent, scripted_model

HANGAR = str(Path(sys.executable).parent / "hangar")
EXAMPLES = Path(__file__).parents[2] / "examples"


def hangar(
    server: ServerThread | None, *args: str, stdin: str | None = None, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HANGAR_")}
    env["COLUMNS"] = "200"
    if server is not None:
        env.update(HANGAR_URL=server.url, HANGAR_API_KEY=key or server.admin_key)
    else:
        env["HANGAR_HOME"] = "/nonexistent"
    return subprocess.run(
        [HANGAR, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture
def applied(server: ServerThread, tmp_path: Path) -> ServerThread:
    with server.client() as api:
        api.post(
            "/v1/apply",
            json=[
                scripted_model(
                    "clockwork",
                    {"toolCalls": [{"name": "current_time", "arguments": {}}]},
                    {"text": "Time checked."},
                ),
                agent("clockwork", "clockwork", tools=[{"builtin": "current_time"}]),
            ],
        )
    return server


def test_apply_a_folder_then_get_and_describe(server: ServerThread) -> None:
    result = hangar(server, "apply", "-f", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert "agent/assistant created (generation 1)" in result.stdout
    assert "model/remote created" in result.stdout
    again = hangar(server, "apply", "-f", str(EXAMPLES))
    assert "agent/assistant unchanged (generation 1)" in again.stdout

    table = hangar(server, "get", "agents").stdout
    assert "assistant" in table and "model=local" in table and "clock" in table
    one = json.loads(hangar(server, "get", "agent", "assistant", "-o", "json").stdout)
    assert one["spec"]["model"] == "local" and one["metadata"]["generation"] == 1
    described = hangar(server, "describe", "agent", "assistant").stdout
    assert "Versions" in described and "generation 1" in described


def test_a_bad_manifest_prints_one_clear_line_and_fails(
    server: ServerThread, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: hangar.dev/v1alpha1\nkind: Agent\nmetadata: {name: a}\nspec: {modle: x}\n"
    )
    result = hangar(server, "apply", "-f", str(bad))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error[invalid_spec]: {bad}, document 0, at spec.modle: unknown field")
    assert "nothing was applied" in result.stderr


def test_run_prints_the_answer_and_runs_show_the_decision_path(applied: ServerThread) -> None:
    result = hangar(applied, "run", "clockwork", "What time is it?")
    assert (result.returncode, result.stdout.strip()) == (0, "Time checked."), result.stderr

    listed = hangar(applied, "runs", "list").stdout
    run_id = listed.splitlines()[1].split()[0]
    tree = hangar(applied, "runs", "show", run_id).stdout
    assert "step 1" in tree and "tool current_time" in tree and "answer: Time checked." in tree
    exported = json.loads(hangar(applied, "runs", "show", run_id, "--json").stdout)
    assert exported["run"]["status"] == "succeeded"
    assert [e["type"] for e in exported["events"]][-1] == "run_finished"


def test_run_stream_prints_as_it_goes(applied: ServerThread) -> None:
    result = hangar(applied, "run", "clockwork", "time?", "--stream")
    assert result.returncode == 0, result.stderr
    assert "→ current_time" in result.stdout and "Time checked." in result.stdout


def test_errors_are_one_line_with_code_and_exit_non_zero(applied: ServerThread) -> None:
    missing = hangar(applied, "run", "ghost", "hi")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error[agent_not_found]: agent 'ghost' not found")
    assert hangar(applied, "get", "gadgets").stderr.startswith("error[unknown_kind]")
    wrong = hangar(applied, "get", "agents", key="hgr_wrong")
    assert wrong.returncode == 1 and wrong.stderr.startswith("error[unauthenticated]")


def test_without_a_server_it_says_how_to_get_one() -> None:
    result = hangar(None, "get", "agents")
    assert result.returncode == 1
    assert result.stderr.startswith("error[configuration_error]: no Hangar server configured")
    assert "hangar up" in result.stderr


def test_keys_create_makes_a_key_bound_to_a_namespace(applied: ServerThread) -> None:
    key = hangar(applied, "keys", "create", "--namespace", "team-x").stdout.strip()
    assert key.startswith("hgr_")
    assert "No Agent resources found" in hangar(applied, "get", "agents", key=key).stderr


def test_delete(applied: ServerThread) -> None:
    assert "agent/clockwork deleted" in hangar(applied, "delete", "agent", "clockwork").stdout
    assert hangar(applied, "get", "agent", "clockwork").returncode == 1


def test_chat_keeps_the_conversation(applied: ServerThread) -> None:
    result = hangar(applied, "chat", "clockwork", stdin="What time?\n")
    assert result.returncode == 0, result.stderr
    assert "Time checked." in result.stdout


def test_schema_works_offline() -> None:
    result = hangar(None, "schema", "model")
    assert json.loads(result.stdout)["properties"]["kind"]["const"] == "Model"


def test_sandbox_exec_runs_a_command_and_passes_its_exit_code(server: ServerThread) -> None:
    result = hangar(
        server, "sandbox", "exec", "default", "--", "sh", "-c", "echo in sandbox; exit 4"
    )
    assert (result.returncode, result.stdout) == (4, "in sandbox\n"), result.stderr
    python = hangar(
        server, "sandbox", "exec", "default", "--backend", "wasm", "--python", "--", "2 ** 10"
    )
    assert (python.returncode, python.stdout) == (0, "1024\n"), python.stderr
    with server.client() as api:
        assert api.get("/v1/sandboxes").json()["items"] == []  # each exec cleans up


def test_sandbox_exec_reports_a_timeout(server: ServerThread) -> None:
    result = hangar(server, "sandbox", "exec", "default", "--timeout", "1", "--", "sleep", "30")
    assert result.returncode != 0
    assert "sandbox[timeout]" in result.stderr


def test_sandbox_doctor_lists_backends(server: ServerThread) -> None:
    table = hangar(server, "sandbox", "doctor").stdout
    assert "bwrap" in table and "wasm" in table and "gvisor" in table


def test_the_sandbox_example_computes_in_a_sandbox(server: ServerThread) -> None:
    assert hangar(server, "apply", "-f", str(EXAMPLES / "agents" / "analyst.yaml")).returncode == 0
    answer = hangar(server, "run", "analyst", "Sum the squares of 1..10")
    assert answer.returncode == 0, answer.stderr
    assert "385" in answer.stdout
    run_id = hangar(server, "runs", "list").stdout.splitlines()[1].split()[0]
    tree = hangar(server, "runs", "show", run_id).stdout
    assert "tool run_python" in tree and "tool read_file" in tree and "'385'" in tree


def test_a_session_carries_the_conversation_across_runs(applied: ServerThread) -> None:
    session = hangar(applied, "sessions", "create", "clockwork").stdout.strip()
    assert session.startswith("ses_")
    for question in ("What time is it?", "And now?"):
        turn = hangar(applied, "run", "clockwork", question, "--session", session)
        assert (turn.returncode, turn.stdout.strip()) == (0, "Time checked."), turn.stderr
    shown = hangar(applied, "sessions", "show", session).stdout
    lines = [line for line in shown.splitlines() if ": " in line]
    assert [line.split(":")[0].strip(" │├└─") for line in lines] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert "And now?" in lines[2]
    assert session in hangar(applied, "sessions", "list").stdout
    assert "deleted" in hangar(applied, "sessions", "delete", session).stdout
    gone = hangar(applied, "sessions", "show", session)
    assert gone.returncode == 1 and gone.stderr.startswith("error[session_not_found]")


def test_a_knowledge_base_is_ingested_with_progress_and_searched(server: ServerThread) -> None:
    handbook = EXAMPLES / "knowledge" / "handbook.yaml"
    assert hangar(server, "apply", "-f", str(handbook)).returncode == 0
    ingested = hangar(server, "kb", "ingest", "handbook", str(EXAMPLES / "knowledge" / "docs"))
    assert ingested.returncode == 0, ingested.stderr
    assert "succeeded: 2 indexed, 0 unchanged, 0 failed" in ingested.stdout
    again = hangar(server, "kb", "ingest", "handbook", str(EXAMPLES / "knowledge" / "docs"))
    assert "succeeded: 0 indexed, 2 unchanged" in again.stdout
    found = hangar(server, "kb", "search", "handbook", "how do I back up the database?")
    assert found.stdout.startswith("[1] operations.md#0 — Operating Hangar > Backups"), found
    sources = json.loads(hangar(server, "kb", "sources", "handbook", "-o", "json").stdout)
    assert [s["source"] for s in sources] == ["operations.md", "troubleshooting.md"]
    removed = hangar(server, "kb", "remove", "handbook", "troubleshooting.md")
    assert "troubleshooting.md: 3 chunks removed" in removed.stdout
    missing = hangar(server, "kb", "ingest", "nothing", str(handbook))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error[knowledge_base_not_found]")


def test_memories_are_listed_edited_and_a_user_forgotten(server: ServerThread) -> None:
    memory_id = hangar(server, "memories", "add", "ada", "The user likes tea.").stdout.strip()
    assert memory_id.startswith("mem_")
    assert hangar(server, "memories", "edit", "ada", memory_id, "The user likes green tea.")
    listed = hangar(server, "memories", "list", "ada").stdout
    assert "The user likes green tea." in listed and "(by hand)" in listed
    forgot = hangar(server, "users", "forget", "ada", "--yes")
    assert "forgot ada: 1 memories, 0 runs, 0 sessions" in forgot.stdout
    assert "green tea" not in hangar(server, "memories", "list", "ada").stdout

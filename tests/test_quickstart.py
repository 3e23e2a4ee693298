"""The README's quick start, for real: `hangar up`, `hangar apply -f examples/`,
`hangar run` answered by the bundled local model, with no API key or network."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Up


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    server = Up(tmp_path / ".hangar").start()
    try:
        yield server
    finally:
        if server.proc and server.proc.poll() is None:
            server.stop()


def test_quick_start_answers_with_the_bundled_local_model(up: Up) -> None:
    printed = up.log.read_text()
    assert f"http://127.0.0.1:{up.port}" in printed and "admin API key: hgr_" in printed
    # The laptop's grants are written where its owner sees them: the default namespace
    # may read the folder Hangar started in (the examples' knowledge base is there).
    admission = (up.home / "admission.yaml").read_text()
    assert "namespaces:\n  - default" in admission and "OPENAI_API_KEY" in admission

    models = up.cli("get", "models")
    assert "local" in models.stdout and "provider=local" in models.stdout, models.stderr

    applied = up.cli("apply", "-f", "examples/")
    assert applied.returncode == 0, applied.stderr
    assert "agent/assistant created" in applied.stdout

    answer = up.cli("run", "assistant", "What is the capital of France?")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()

    run_id = up.cli("runs", "list").stdout.splitlines()[1].split()[0]
    trace = json.loads(up.cli("runs", "show", run_id, "--json").stdout)
    responses = [e["data"] for e in trace["events"] if e["type"] == "model_response"]
    assert [r["model"] for r in responses] == ["local"]
    assert responses[0]["usage"]["output_tokens"] > 0
    assert trace["run"]["output"]["text"] == answer.stdout.strip()


def test_state_and_the_admin_key_survive_a_restart(up: Up) -> None:
    up.cli("apply", "-f", "examples/agents/scripted.yaml")
    first = up.cli("run", "scripted-clock", "time?")
    assert first.returncode == 0, first.stderr
    key = (up.home / "admin.key").read_text().strip()
    # The state is the server's alone: the folder 0700, its files 0600.
    assert up.home.stat().st_mode & 0o777 == 0o700
    for name in ("admin.key", "client.json", "hangar.db", "secret.key", "admission.yaml"):
        assert (up.home / name).stat().st_mode & 0o777 == 0o600, name
    assert up.stop() == 0

    again = Up(up.home).start()
    try:
        assert f"admin API key: {key}" in again.log.read_text()
        listed = again.cli("runs", "list")
        assert "scripted-clock@1" in listed.stdout and "succeeded" in listed.stdout
        assert "unchanged" in again.cli("apply", "-f", "examples/agents/scripted.yaml").stdout
    finally:
        again.stop()

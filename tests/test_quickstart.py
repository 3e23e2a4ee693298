"""The README's quick start, for real: `hangar up`, `hangar apply -f examples/`,
`hangar run` answered by the bundled local model, with no API key or network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_until

BIN = Path(sys.executable).parent
ROOT = Path(__file__).parents[1]


def clean_env(home: Path) -> dict[str, str]:
    """No provider keys, no Hangar overrides: only what a fresh shell has."""
    drop = ("HANGAR_", "OPENAI_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HANGAR_HOME"] = str(home)
    env["COLUMNS"] = "200"
    return env


class Up:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.log = home.parent / f"up-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Up:
        self.proc = subprocess.Popen(
            [str(BIN / "hangar"), "up", "--port", str(self.port)],
            env=clean_env(self.home),
            cwd=ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, what="hangar up")
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(30)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "hangar"), *args],
            env=clean_env(self.home),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )


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
    assert oct((up.home / "admin.key").stat().st_mode & 0o777) == "0o600"
    assert up.stop() == 0

    again = Up(up.home).start()
    try:
        assert f"admin API key: {key}" in again.log.read_text()
        listed = again.cli("runs", "list")
        assert "scripted-clock@1" in listed.stdout and "succeeded" in listed.stdout
        assert "unchanged" in again.cli("apply", "-f", "examples/agents/scripted.yaml").stdout
    finally:
        again.stop()

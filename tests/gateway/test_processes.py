"""Several server processes on one port, over PostgreSQL: each a whole gateway with
its workers, all stopped together, and never left behind by a parent that died."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from hangar.config import Settings, usable_cores
from tests.conftest import POSTGRES_URL
from tests.helpers import BIN, Up, agent, clean_env, scripted_model, wait_until


def server_processes(parent: int) -> list[int]:
    """The parent's children that serve (not multiprocessing's resource tracker)."""
    found = []
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for child in map(int, children):
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            found.append(child)
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # dead, waiting for whoever adopted it to reap it


@pytest.fixture
def up(tmp_path: Path, pg_schema: str) -> Iterator[Up]:
    """``hangar up`` with two processes on PostgreSQL; killed after the test whatever
    happened (its children die with it)."""
    server = Up(
        tmp_path / "home",
        HANGAR_DATABASE_URL=POSTGRES_URL,
        HANGAR_DATABASE_SCHEMA=pg_schema,
        HANGAR_PROCESSES="2",
        HANGAR_TELEMETRY="off",
    )
    try:
        yield server.start()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


def test_two_processes_serve_one_port_and_stop_together(up: Up) -> None:
    assert up.proc is not None
    children = server_processes(up.proc.pid)
    assert len(children) == 2
    headers = {"Authorization": f"Bearer {up.admin_key}"}
    with httpx.Client(base_url=up.url, headers=headers, timeout=60) as api:
        api.post(
            "/v1/apply",
            json=[scripted_model("m", {"text": "done", "delaySeconds": 0.2}), agent("a", "m")],
        ).raise_for_status()

        def run(_: int) -> str:
            with httpx.Client(base_url=up.url, headers=headers, timeout=60) as own:
                answer = own.post("/v1/agents/a/runs", json={"input": "go"}).json()
            return str(answer["status"])

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(run, range(16))) == ["succeeded"] * 16
    assert up.stop() == 0  # Ctrl-C: the parent stops its children and exits cleanly
    assert all(gone(child) for child in children)


def test_the_children_die_with_a_parent_killed_outright(up: Up) -> None:
    assert up.proc is not None
    children = server_processes(up.proc.pid)
    os.kill(up.proc.pid, signal.SIGKILL)
    up.proc.wait(10)
    wait_until(lambda: all(gone(child) for child in children), what="the children to die")


def test_several_processes_on_sqlite_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    done = subprocess.run(
        [str(BIN / "hangar"), "up", "--processes", "2"],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    said = " ".join((done.stdout + done.stderr).split())
    assert "configuration_error" in said and "need PostgreSQL" in said
    assert "HANGAR_DATABASE_URL" in said
    assert not home.exists()


def test_by_default_a_process_per_core_on_postgresql_and_one_on_sqlite(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).resolved_processes == 1
    shared = Settings(home=tmp_path, database_url=POSTGRES_URL)
    assert shared.resolved_processes == len(os.sched_getaffinity(0))
    assert Settings(home=tmp_path, database_url=POSTGRES_URL, processes=3).resolved_processes == 3


def test_a_child_that_dies_stops_the_others_and_the_parent_says_so(up: Up) -> None:
    """For the orchestrator to restart the whole, as it would a single process."""
    assert up.proc is not None
    first, second = server_processes(up.proc.pid)
    os.kill(first, signal.SIGKILL)
    assert up.proc.wait(60) == 128 + signal.SIGKILL
    assert gone(second)
    assert f"server process {first} exited (-9): stopping the others" in up.log.read_text()


def test_a_containers_cpu_quota_bounds_the_cores_counted(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert usable_cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cores(tmp_path) == 1

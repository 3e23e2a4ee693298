"""The run queue under load: dispatch throughput per worker count, and the gateway's
latency with 50 concurrent clients.

Dispatch. ``RUNS`` runs of a one-step agent (the scripted model answers at once) are
queued in one transaction while W ``hangar worker`` processes (W = 1, 2, 4; four run
slots each, warmed up by a few runs of their own) stand ready; throughput is
runs / (last run's end − first run's claim), read from the store's own timestamps.
The same on PostgreSQL and on SQLite.

The floor is the database alone doing the same durable work, by hand, in W processes
in the same run: claim the oldest queued job (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite, where writers take turns), write as many
event rows as a Hangar run writes, and mark it done. A bare claim loop with no work
is reported too, as the ceiling of the claim itself.

Fair share. With four worker processes busy on one namespace's flood of runs, a
second namespace queues a few: the share of the runs started while both wait that
goes to the second (0.5 is an even split), read from the store's timestamps.

Gateway. 50 clients at once, each sending one-step runs one after another
(``POST /v1/agents/NAME/runs``, waiting for the answer) to ``hangar up``: p50 and p99
of the whole request, and runs per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.agent_loop import free_port, wait_http
from bench.databases import Database
from bench.sandboxes import percentile
from hangar.runtime.queue import FAIR_SHARE_SECONDS
from hangar.store.postgres import driver_dsn

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
HANGAR = Path(sys.executable).parent / "hangar"
WORKER_COUNTS = (1, 2, 4)
SLOTS = 4
WARM_UP = 50
"""Runs per worker process before the measure."""
CLIENTS = 50
ENDED = ("succeeded", "failed", "cancelled")
FLOOD = 2000
TRICKLE = 200

MODEL = {
    "apiVersion": "hangar.dev/v1alpha1",
    "kind": "Model",
    "metadata": {"name": "instant"},
    "spec": {"provider": "scripted", "script": [{"text": "done"}]},
}
AGENT = {
    "apiVersion": "hangar.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "echo"},
    "spec": {"model": "instant"},
}


# --- Hangar's dispatch ------------------------------------------------------------------


async def _prepare(db: Database, namespaces: tuple[str, ...] = ("default",)) -> Any:
    from hangar.spec import parse_document
    from hangar.store.sql import SqlStore

    store = SqlStore(db.url, schema=db.schema)
    await store.migrate()
    for namespace in namespaces:
        for document in (MODEL, AGENT):
            resource, _ = parse_document(document)
            assert resource is not None
            await store.apply_resource(namespace, resource)
    return store


async def _queue(store: Any, namespace: str, runs: int) -> datetime:
    """Queue ``runs`` runs of the echo agent in one transaction; returns a time before
    the first of them."""
    from hangar.ids import new_id, now
    from hangar.store.tables import runs as runs_table

    since = now()
    rows = [
        {
            "id": new_id("run"),
            "namespace": namespace,
            "agent": "echo",
            "agent_generation": 1,
            "status": "queued",
            "input": {"messages": [{"role": "user", "content": "go"}]},
            "usage": {},
            "last_seq": 0,
            "cancel_requested": False,
            "created_at": now(),
            "depth": 0,
            "priority": 0,
        }
        for _ in range(runs)
    ]
    async with store.engine.begin() as conn:
        await conn.execute(runs_table.insert(), rows)
    return since


async def _count(store: Any, where: Any) -> int:
    from hangar.store.tables import runs as runs_table

    async with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(runs_table).where(where)
        return int((await conn.execute(query)).scalar_one())


async def _until(store: Any, where: Any, count: int) -> None:
    """Poll the store (another process's runs: no event here would say so)."""
    for _ in range(60_000):
        if await _count(store, where) >= count:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"fewer than {count} runs after 20 minutes")


async def _queue_and_drain(db: Database, runs: int) -> tuple[float, int]:
    """Queue ``runs`` runs in one transaction; wait for all to end. Returns runs per
    second (first claim to last end) and events per run, of these runs only."""
    from hangar.store.tables import run_events
    from hangar.store.tables import runs as runs_table

    store = await _prepare(db)
    try:
        ours = runs_table.c.created_at >= await _queue(store, "default", runs)
        await _until(store, ours & runs_table.c.status.in_(ENDED), runs)
        async with store.engine.connect() as conn:
            first, last, failed = (
                await conn.execute(
                    sa.select(
                        sa.func.min(runs_table.c.started_at),
                        sa.func.max(runs_table.c.finished_at),
                        sa.func.count().filter(runs_table.c.status != "succeeded"),
                    ).where(ours)
                )
            ).one()
            events = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(
                        run_events.join(runs_table, runs_table.c.id == run_events.c.run_id)
                    )
                    .where(ours)
                )
            ).scalar_one()
        assert failed == 0, f"{failed} runs did not succeed"
        return runs / (last - first).total_seconds(), round(events / runs)
    finally:
        await store.close()


@contextlib.contextmanager
def _workers(db: Database, count: int) -> Iterator[None]:
    """``count`` ``hangar worker`` processes on ``db``, started and waiting for work."""
    env = db.env(HANGAR_WORKERS=str(SLOTS))
    procs = [
        subprocess.Popen([str(HANGAR), "worker"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    try:
        for proc in procs:  # each says so once it is started and waiting for work
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("Hangar worker"), f"a worker did not start: {line!r}"
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)


def hangar_dispatch(kind: str, workers: int, runs: int) -> tuple[float, int]:
    db = Database.fresh(kind)
    try:
        asyncio.run(_prepare_and_close(db))
        with _workers(db, workers):
            # Warm up first, as the floor's processes open their connections before the
            # start: Hangar's open as runs come, and a cold measure counts their opening.
            asyncio.run(_queue_and_drain(db, WARM_UP * workers))
            return asyncio.run(_queue_and_drain(db, runs))
    finally:
        db.drop()


async def _prepare_and_close(db: Database, namespaces: tuple[str, ...] = ("default",)) -> None:
    store = await _prepare(db, namespaces)
    await store.close()


# --- fair share between namespaces --------------------------------------------------------


async def _flood_and_trickle(
    db: Database, workers: int, flood: int, trickle: int
) -> dict[str, float]:
    """Queue ``flood`` runs in one namespace; once they fill every slot, ``trickle`` in
    another. Returns the trickle's share of the runs started while both were waiting,
    and how many of the flood were still queued when the trickle's last one started."""
    from hangar.ids import now
    from hangar.store.tables import runs as runs_table

    store = await _prepare(db, ("flood", "trickle"))
    try:
        since = await _queue(store, "flood", flood)
        ours = runs_table.c.created_at >= since
        await _until(store, ours & runs_table.c.started_at.is_not(None), workers * SLOTS)
        arrived = now()
        await _queue(store, "trickle", trickle)
        await _until(store, ours & runs_table.c.status.in_(ENDED), flood + trickle)
        async with store.engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.select(runs_table.c.namespace, runs_table.c.started_at).where(ours)
                )
            ).all()
    finally:
        await store.close()
    # SQLite's timestamps come back without their zone (UTC, as they were written).
    rows = [(ns, t if t.tzinfo else t.replace(tzinfo=UTC)) for ns, t in rows]
    last = max(started for namespace, started in rows if namespace == "trickle")
    window = [namespace for namespace, started in rows if arrived <= started <= last]
    return {
        "trickle_share": window.count("trickle") / len(window),
        "flood_left": sum(1 for namespace, started in rows if started > last),
    }


def fair_share(kind: str, workers: int, flood: int, trickle: int) -> dict[str, float]:
    db = Database.fresh(kind)
    try:
        asyncio.run(_prepare_and_close(db, ("default", "flood", "trickle")))
        with _workers(db, workers):
            asyncio.run(_queue_and_drain(db, WARM_UP * workers))
            return asyncio.run(_flood_and_trickle(db, workers, flood, trickle))
    finally:
        db.drop()


# --- the floor: the database alone -------------------------------------------------------

FLOOR_TABLES = (
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, status TEXT NOT NULL, "
    "started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION)",
    "CREATE TABLE job_events (job_id INTEGER, seq INTEGER, data TEXT, PRIMARY KEY (job_id, seq))",
    "CREATE INDEX jobs_queued ON jobs (status, id)",
)
CLAIM = (
    "UPDATE jobs SET status = 'running', started_at = {clock} WHERE id = (SELECT id FROM jobs "
    "WHERE status = 'queued' ORDER BY id {lock} LIMIT 1) RETURNING id"
)
PG_CLOCK = "extract(epoch from clock_timestamp())"
SQLITE_CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"


def _floor_pg(dsn: str, schema: str, events: int, ready: Any, go: Any) -> None:
    import asyncpg

    claim = CLAIM.format(clock=PG_CLOCK, lock="FOR UPDATE SKIP LOCKED")
    done = f"UPDATE jobs SET status = 'done', finished_at = {PG_CLOCK} WHERE id = $1"

    async def slot(pool: Any) -> None:
        while True:
            async with pool.acquire() as conn:
                job = await conn.fetchval(claim)
                if job is None:
                    return
                for seq in range(1, events + 1):
                    await conn.execute("INSERT INTO job_events VALUES ($1, $2, '{}')", job, seq)
                await conn.execute(done, job)

    async def main() -> None:
        pool = await asyncpg.create_pool(
            dsn, min_size=SLOTS, max_size=SLOTS, server_settings={"search_path": schema}
        )
        ready.release()
        go.wait()
        await asyncio.gather(*(slot(pool) for _ in range(SLOTS)))
        await pool.close()

    asyncio.run(main())


def _floor_sqlite(path: str, events: int, ready: Any, go: Any) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    claim = CLAIM.format(clock=SQLITE_CLOCK, lock="")
    done = f"UPDATE jobs SET status = 'done', finished_at = {SQLITE_CLOCK} WHERE id = ?"
    ready.release()
    go.wait()
    while True:
        conn.execute("BEGIN IMMEDIATE")  # one writer at a time, as SQLite has it
        row = conn.execute(claim).fetchone()
        conn.execute("COMMIT")
        if row is None:
            return
        for seq in range(1, events + 1):
            conn.execute("INSERT INTO job_events VALUES (?, ?, '{}')", (row[0], seq))
        conn.execute(done, (row[0],))


async def _floor_pg_setup(dsn: str, schema: str, runs: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    for statement in FLOOR_TABLES:
        await conn.execute(statement)
    await conn.executemany(
        "INSERT INTO jobs (id, status) VALUES ($1, 'queued')", [(i,) for i in range(runs)]
    )
    await conn.close()


async def _floor_pg_result(dsn: str, schema: str) -> tuple[float, float, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    row = await conn.fetchrow(FLOOR_RESULT)
    await conn.close()
    return row[0], row[1], row[2]


FLOOR_RESULT = "SELECT min(started_at), max(finished_at), count(*) FROM jobs WHERE status = 'done'"


def floor_dispatch(kind: str, workers: int, runs: int, events: int) -> float:
    """Runs per second of the bare loop: W processes, each claiming and completing jobs
    (``events`` event rows each; 0: the claim alone), all let go at the same moment."""
    db = Database.fresh(kind)
    try:
        dsn = driver_dsn(db.url)
        path = str(db.home / "floor.db")
        if kind == "sqlite":
            conn = sqlite3.connect(path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            for statement in FLOOR_TABLES:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO jobs (id, status) VALUES (?, 'queued')", [(i,) for i in range(runs)]
            )
            conn.close()
        else:
            asyncio.run(_floor_pg_setup(dsn, db.schema or "public", runs))
        ctx = get_context("spawn")
        ready, go = ctx.Semaphore(0), ctx.Event()
        procs = [
            ctx.Process(
                target=_floor_sqlite if kind == "sqlite" else _floor_pg,
                args=(path, events, ready, go)
                if kind == "sqlite"
                else (dsn, db.schema, events, ready, go),
            )
            for _ in range(workers)
        ]
        for proc in procs:
            proc.start()
        for _ in procs:
            ready.acquire()
        go.set()
        for proc in procs:
            proc.join()
        if kind == "sqlite":
            conn = sqlite3.connect(path)
            first, last, count = conn.execute(FLOOR_RESULT).fetchone()
            conn.close()
        else:
            first, last, count = asyncio.run(_floor_pg_result(dsn, db.schema or "public"))
        assert count == runs, f"the floor finished {count} of {runs}"
        return float(runs / (last - first))
    finally:
        db.drop()


# --- the gateway under 50 clients ---------------------------------------------------------


async def _clients(url: str, key: str, per_client: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=120, limits=limits
    ) as client:

        async def one_client() -> None:
            for _ in range(per_client):
                start = time.perf_counter()
                response = await client.post("/v1/agents/echo/runs", json={"input": "go"})
                latencies.append((time.perf_counter() - start) * 1000)
                run = response.json()
                assert response.status_code == 200 and run["status"] == "succeeded", run

        await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return latencies


def gateway(kind: str, per_client: int) -> dict[str, float]:
    """``hangar up`` on ``kind`` with 50 clients at once: p50, p99 (ms), runs per second."""
    db = Database.fresh(kind)
    port = free_port()
    proc = subprocess.Popen(
        [str(HANGAR), "up"],
        # The server's speed is measured, not a key's rate limit (100/s by default):
        # 50 clients on one key go past it at once.
        env=db.env(HANGAR_PORT=str(port), HANGAR_RATE_LIMIT_PER_SECOND="1000000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc)
        key = (db.home / "admin.key").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
            client.post("/v1/apply", json=[MODEL, AGENT]).raise_for_status()
        asyncio.run(_clients(url, key, 2))  # warm up
        start = time.perf_counter()
        latencies = asyncio.run(_clients(url, key, per_client))
        elapsed = time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(30)
        db.drop()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 0.99),
        "runs_per_second": len(latencies) / elapsed,
    }


def loop_in_process(runs: int) -> float:
    """The same one-step run with no store, no queue and no HTTP: Hangar's agent loop on
    the same scripted model, in this process; runs per second (issue 18's SQLite row
    compares Hangar's dispatch with this)."""
    from hangar.config import Settings
    from hangar.models.messages import Message
    from hangar.models.registry import build_chat_model
    from hangar.runtime.loop import LoopInput, run_loop
    from hangar.spec.agent import AgentSpec
    from hangar.spec.model import ModelSpec

    model = build_chat_model("instant", ModelSpec.model_validate(MODEL["spec"]), Settings())
    spec = AgentSpec.model_validate(AGENT["spec"])

    async def drive() -> float:
        start = time.perf_counter()
        for _ in range(runs):
            messages = [Message(role="user", content="hi")]
            outcome = await run_loop(LoopInput(agent=spec, model=model, messages=messages))
            assert outcome.output["text"] == "done", outcome
        return runs / (time.perf_counter() - start)

    return asyncio.run(drive())


# --- the report ---------------------------------------------------------------------------


def main(runs: int, per_client: int = 10) -> None:
    dispatch: dict[str, dict[int, dict[str, float]]] = {}
    for kind in ("postgresql", "sqlite"):
        dispatch[kind] = {}
        for workers in WORKER_COUNTS:
            hangar, events = hangar_dispatch(kind, workers, runs)
            floor = floor_dispatch(kind, workers, runs, events)
            claim_only = floor_dispatch(kind, workers, runs, 0)
            dispatch[kind][workers] = {
                "hangar": hangar,
                "floor": floor,
                "claim_only": claim_only,
                "events_per_run": events,
            }
            print(f"{kind} ×{workers}: hangar {hangar:.0f}/s, floor {floor:.0f}/s", flush=True)
    in_process = loop_in_process(runs)
    shares = {
        kind: fair_share(kind, max(WORKER_COUNTS), FLOOD, TRICKLE)
        for kind in ("postgresql", "sqlite")
    }
    gateways = {kind: gateway(kind, per_client) for kind in ("sqlite", "postgresql")}

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(
        f"| {kind} | {workers} | {m['hangar']:.0f} | {m['floor']:.0f} | "
        f"{m['hangar'] / m['floor']:.2f}× | {m['claim_only']:.0f} |"
        for kind, by_count in dispatch.items()
        for workers, m in by_count.items()
    )
    events = next(iter(dispatch["sqlite"].values()))["events_per_run"]
    gateway_rows = "\n".join(
        f"| {kind} | {g['p50_ms']:.1f} | {g['p99_ms']:.1f} | {g['runs_per_second']:.0f} |"
        for kind, g in gateways.items()
    )
    share_rows = "\n".join(
        f"| {kind} | {m['trickle_share']:.2f} | {m['flood_left']:.0f} |"
        for kind, m in shares.items()
    )
    report = f"""# The run queue under load

{stamp}, {platform.machine()}, {os.cpu_count()} cores.

## Dispatch throughput

{runs} one-step runs queued at once; W `hangar worker` processes with {SLOTS} run slots
each, warmed up by {WARM_UP} runs per process first (the floor's processes open their
connections before the start). Runs per second from the first claim to the last end.
The floor: W bare processes ({SLOTS} connections each on PostgreSQL) claiming with
`SKIP LOCKED` (SQLite: `BEGIN IMMEDIATE`) and writing the same {events} event rows per
run and the end, in autocommit, one statement each (7 per run; Hangar's run takes 3 on
PostgreSQL: its claim stores `run_started`, the model's response its request, its
finish `final` and `run_finished`; 2 while a slot is busy, whose finish claims its
next run); "claim only" is that loop with no work at all. The
target, at least 0.5× the floor, is PostgreSQL's, where both sides pay the same round
trips; SQLite's floor runs in-process, in C, and does a whole run in less time than
Hangar's agent loop takes in Python.

| database | workers | Hangar runs/s | floor runs/s | Hangar ÷ floor | claim only/s |
| --- | ---: | ---: | ---: | ---: | ---: |
{rows}

Issue 18's SQLite target compares with Hangar's own agent loop running the same
one-step run in one process with no store, no queue and no HTTP (scripted model):
{in_process:.0f} runs/s, so SQLite with one worker is
{dispatch["sqlite"][1]["hangar"] / in_process:.4f}× of it (target ≥ 0.5×).

## Fair share between namespaces

{max(WORKER_COUNTS)} worker processes ({SLOTS} slots each). Namespace `flood` queues
{FLOOD} runs at once; when they fill every slot, namespace `trickle` queues {TRICKLE}.
The trickle's share of the runs started from its arrival to its last run's start: 0.50
is an even split between the two (the queue's rule, by runs running per namespace, with
each process choosing from a look at the queue at most {FAIR_SHARE_SECONDS} s old);
first come, first served would give it none until the flood had drained. "Flood still
queued" counts the flood's runs that started after the trickle's last: the two competed
the whole time.

| database | trickle's share | flood still queued |
| --- | ---: | ---: |
{share_rows}

## The gateway with {CLIENTS} concurrent clients

`hangar up` (its default settings: up to 1,000 runs at once, so all {CLIENTS} execute
together), {CLIENTS} clients each sending {per_client} one-step runs in a row and waiting for
each answer.

| database | p50 ms | p99 ms | runs/s |
| --- | ---: | ---: | ---: |
{gateway_rows}
"""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dispatch.md").write_text(report)
    (RESULTS / "dispatch.json").write_text(
        json.dumps(
            {
                "when": stamp,
                "dispatch": dispatch,
                "loop_in_process": in_process,
                "fair_share": shares,
                "gateway": gateways,
            },
            indent=2,
        )
    )
    print(report)

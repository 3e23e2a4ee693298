"""Scheduled Triggers: a cron expression starts one run at each of its times, once,
however many processes keep the clock; a bad expression is refused at apply."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hangar.config import Settings
from hangar.runtime.host import Runtime
from hangar.runtime.schedules import Schedules
from hangar.spec import parse_document
from tests.helpers import agent, doc, scripted_model


async def test_each_scheduled_time_starts_one_run_however_many_clocks(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"))
    await runtime.start(workers=0)  # the clocks are driven by hand below
    try:
        for document in (
            scripted_model("m", {"text": "report sent"}),
            agent("reporter", "m"),
            doc(
                "Trigger",
                "every-ten-seconds",
                {"agent": "reporter", "schedule": "* * * * * */10", "input": "Report for {body}"},
            ),
        ):
            resource, problems = parse_document(document)
            assert resource is not None, problems
            await runtime.store.apply_resource("default", resource)
        clocks = [Schedules(runtime.store, runtime.runs) for _ in range(3)]  # three processes
        start = datetime(2026, 11, 25, 12, 0, 5, tzinfo=UTC)
        for clock in clocks:
            assert await clock.tick(start) == []  # each clock starts counting now
        started = []
        for step in range(1, 4):  # 12:00:15, :25, :35 come while the clocks tick together
            now = start + timedelta(seconds=10 * step)
            for clock in clocks:
                started += await clock.tick(now)
        assert len(started) == 3 == len(set(started))  # each time once, whichever clock
        runs = await runtime.store.list_runs("default")
        assert sorted(r.input["messages"][0]["content"] for r in runs) == [
            f"Report for 2026-11-25T12:00:{s}+00:00" for s in (10, 20, 30)
        ]
    finally:
        await runtime.stop()


def test_a_bad_cron_expression_is_refused_with_the_format_named() -> None:
    resource, problems = parse_document(
        doc("Trigger", "t", {"agent": "a", "schedule": "every monday"})
    )
    assert resource is None
    assert "is not a cron expression: five fields" in problems[0].message
    _, two = parse_document(
        doc(
            "Trigger",
            "t",
            {
                "agent": "a",
                "schedule": "0 9 * * *",
                "webhook": {"secret": {"secret": "s", "key": "k"}},
            },
        )
    )
    assert "exactly one of 'webhook', 'nats' or 'schedule'" in two[0].message


async def test_a_worker_process_keeps_the_clock(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off", workers=2))
    await runtime.store.migrate()
    try:
        for document in (
            scripted_model("m", {"text": "tick"}),
            agent("ticker", "m"),
            doc("Trigger", "each-second", {"agent": "ticker", "schedule": "* * * * * *"}),
        ):
            resource, _ = parse_document(document)
            assert resource is not None
            await runtime.store.apply_resource("default", resource)
        await runtime.start()
        for _ in range(100):
            runs = await runtime.store.list_runs("default")
            if len(runs) >= 2 and all(r.status.finished for r in runs):
                break
            await asyncio.sleep(0.1)
        assert len(runs) >= 2 and all(r.status.value == "succeeded" for r in runs)
    finally:
        await runtime.stop()


async def test_a_trigger_the_clock_cannot_read_stops_no_other(tmp_path: Path) -> None:
    """A stored spec this version does not read (written by a newer one, or by hand)
    is left out with a warning; the other schedules keep their times."""
    import sqlalchemy as sa

    from hangar.store.tables import resources

    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"))
    await runtime.start(workers=0)
    try:
        for document in (
            scripted_model("m", {"text": "done"}),
            agent("reporter", "m"),
            doc("Trigger", "a-broken-one", {"agent": "reporter", "schedule": "* * * * * *"}),
            doc("Trigger", "hourly", {"agent": "reporter", "schedule": "0 * * * *"}),
        ):
            resource, problems = parse_document(document)
            assert resource is not None, problems
            await runtime.store.apply_resource("default", resource)
        async with runtime.store.engine.begin() as conn:  # type: ignore[attr-defined]
            await conn.execute(
                sa.update(resources)
                .where(resources.c.name == "a-broken-one")
                .values(spec={"agent": "reporter", "schedule": "every so often"})
            )
        clock = Schedules(runtime.store, runtime.runs)
        start = datetime(2026, 11, 25, 12, 59, 50, tzinfo=UTC)
        assert await clock.tick(start) == []
        started = await clock.tick(start + timedelta(seconds=20))
        assert len(started) == 1
        (run,) = await runtime.store.list_runs("default")
        assert run.id == started[0] and run.input["messages"][0]["content"].endswith(
            "13:00:00+00:00"
        )
    finally:
        await runtime.stop()


async def test_a_changed_schedule_counts_from_the_change(tmp_path: Path) -> None:
    runtime = Runtime(Settings(home=tmp_path / "home", telemetry="off"))
    await runtime.start(workers=0)
    try:

        async def apply(schedule: str) -> None:
            for document in (
                scripted_model("m", {"text": "done"}),
                agent("reporter", "m"),
                doc("Trigger", "report", {"agent": "reporter", "schedule": schedule}),
            ):
                resource, problems = parse_document(document)
                assert resource is not None, problems
                await runtime.store.apply_resource("default", resource)

        await apply("0 * * * *")  # hourly
        clock = Schedules(runtime.store, runtime.runs)
        start = datetime(2026, 11, 25, 12, 10, tzinfo=UTC)
        assert await clock.tick(start) == []
        await apply("30 * * * *")  # now at half past: 12:30 is its first time
        assert await clock.tick(start + timedelta(minutes=5)) == []
        assert len(await clock.tick(start + timedelta(minutes=25))) == 1  # 12:35 ≥ 12:30
        assert await clock.tick(start + timedelta(minutes=55)) == []  # 13:05: 13:00 is no more
        runs = await runtime.store.list_runs("default")
        assert [r.input["messages"][0]["content"] for r in runs] == ["2026-11-25T12:30:00+00:00"]
    finally:
        await runtime.stop()

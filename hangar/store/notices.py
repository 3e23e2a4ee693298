"""Change notices between processes: PostgreSQL's LISTEN/NOTIFY.

Several gateways and workers share one PostgreSQL. When a worker stores a run's event,
a gateway in another process streaming that run should send it now, not at its next
poll; when a gateway queues a run, an idle worker elsewhere should take it now. The
database announces both on commit (triggers from migration 0010), and one connection
per process listens.

Notices only make delivery prompt: the store stays the truth. A notice lost while
the connection is down is made good by a ``resync`` notice on reconnecting (everyone
catches up from the store), and the processes' slow polls remain behind it all.

Queued runs are announced by a trigger; stored events by the store that stored them,
after the commit (``Announcer``). A NOTIFY holds one lock for the whole database from
its transaction's commit until that commit is on disk, so a trigger's NOTIFY in every
event's transaction made every worker's writes wait for each other's disk flushes:
dispatch with four worker processes ran at half the speed it has without.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from hangar.store.postgres import driver_dsn
from hangar.store.records import Notice

log = logging.getLogger("hangar.store")

CHANNEL = "hangar_changes"
"""Where queued runs are announced (migration 0010's trigger)."""
EVENTS_CHANNEL = "hangar_events"
"""Where stored run events are announced (migration 0014): only processes that stream
runs to clients listen to it."""
APPLICATION = "hangar-notices"
"""The listening connection's name in ``pg_stat_activity`` (then its schema, if set)."""
RECONNECT_SECONDS = 1.0
KEEPALIVE_SECONDS = 30.0
"""A silent connection is asked for a sign of life this often (a dead one raises)."""


def parse_notice(payload: str, schema: str) -> Notice | None:
    """A notice from a trigger's payload, or None if it is another schema's (or not ours)."""
    parts = payload.split(" ")
    if len(parts) < 4 or parts[0] != schema:
        return None
    if parts[1] == "event" and len(parts) == 6 and parts[4].isdigit():
        return Notice("event", parts[2], parts[3], int(parts[4]), parts[5])
    if parts[1] == "queued" and len(parts) == 4:
        return Notice("queued", parts[2], parts[3])
    return None


async def listen_postgres(
    url: str, schema: str | None, on_notice: Callable[[Notice], None], *, events: bool = True
) -> None:
    """Deliver the database's notices to ``on_notice`` until cancelled, reconnecting
    when the connection drops (each reconnect is announced as ``resync``). Without
    ``events``, only queued runs."""
    dsn = driver_dsn(url)
    name = f"{APPLICATION} {schema}" if schema else APPLICATION
    channels = (CHANNEL, EVENTS_CHANNEL) if events else (CHANNEL,)
    first = True
    while True:
        try:
            await _listen_once(dsn, name, schema, on_notice, channels, resync=not first)
            log.warning("listening for change notices: connection lost; reconnecting")
        except Exception as exc:
            log.warning("listening for change notices failed (%s); reconnecting", exc)
        first = False
        await asyncio.sleep(RECONNECT_SECONDS)


async def _listen_once(
    dsn: str,
    name: str,
    schema: str | None,
    on_notice: Callable[[Notice], None],
    channels: tuple[str, ...],
    *,
    resync: bool,
) -> None:
    """Listen on one connection until it is lost."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"application_name": name})
    lost = asyncio.Event()
    try:
        own_schema = schema or await conn.fetchval("SELECT current_schema()")

        def deliver(_conn: object, _pid: int, _channel: str, payload: object) -> None:
            notice = parse_notice(str(payload), own_schema)
            if notice is not None:
                on_notice(notice)

        conn.add_termination_listener(lambda _conn: lost.set())
        for channel in channels:
            await conn.add_listener(channel, deliver)
        if resync:
            on_notice(Notice("resync"))
        while not lost.is_set():
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    await lost.wait()
            except TimeoutError:
                await conn.fetchval("SELECT 1")  # raises if the connection died silently
    finally:
        if not conn.is_closed():
            conn.terminate()


ANNOUNCE = (
    "SELECT pg_notify($1, concat_ws(' ', current_schema(), 'event', payload)) "
    "FROM unnest($2::text[]) AS payload"
)


class Announcer:
    """Announces stored events on ``EVENTS_CHANNEL``, after their commit, in a statement
    of its own: a transaction that only notifies writes nothing to wait for on disk, so
    it holds the NOTIFY lock for a moment. An announcement leaves at once (a follower in
    another process, a request waiting for its run's end, hears of it within a round
    trip: waiting 50 ms to gather more made a one-step run over a gateway and a worker
    take 62 ms instead of about 15); events stored while one is on its way go out
    together in the next, in order, so a busy worker process still sends a few
    announcements for many events."""

    def __init__(self, pool: Callable[[], Awaitable[Any]]) -> None:
        self._pool = pool
        self._pending: list[str] = []
        self._sending: asyncio.Task[None] | None = None

    def announce(self, namespace: str, run_id: str, last_seq: int, types: Sequence[str]) -> None:
        """Events ``types`` of a run were stored, the last as ``last_seq``."""
        first = last_seq - len(types) + 1
        self._pending.extend(
            f"{namespace} {run_id} {seq} {type}" for seq, type in enumerate(types, start=first)
        )
        if self._sending is None or self._sending.done():
            self._sending = asyncio.create_task(self._send(), name="hangar-announce")

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the events stored in this turn of the loop go together
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                pool = await self._pool()
                await pool.execute(ANNOUNCE, EVENTS_CHANNEL, batch)
            except Exception as exc:  # the store has them: listeners catch up by polling
                log.warning("announcing %d stored events failed: %s", len(batch), exc)

    async def close(self) -> None:
        """Send what is pending (a process stopping still announces its last events)."""
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending

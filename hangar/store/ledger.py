"""The usage ledger and budget counters in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from hangar.ids import now
from hangar.store import sqlite_hot as on_sqlite
from hangar.store import tables
from hangar.store.engine import SqlCore
from hangar.store.records import (
    BudgetLine,
    LedgerEntry,
)


async def release_holds(conn: AsyncConnection, run_ids: set[str]) -> int:
    """Give back what runs reserved on budgets and did not settle; returns how many
    reservations."""
    holds = tables.budget_holds
    released = (
        await conn.execute(
            holds.delete()
            .where(holds.c.run_id.in_(run_ids))
            .returning(holds.c.key, holds.c.tokens, holds.c.cost)
        )
    ).all()
    for key, tokens, cost in released:
        await change_counter(conn, key, -int(tokens), -float(cost), 0, 0.0)
    return len(released)


async def change_counter(
    conn: AsyncConnection,
    key: str,
    reserved_tokens: int,
    reserved_cost: float,
    tokens: int,
    cost: float,
) -> None:
    """Add to a budget line's reserved and spent totals (negative: take away)."""
    counters = tables.budget_counters
    await conn.execute(
        counters.update()
        .where(counters.c.key == key)
        .values(
            reserved_tokens=counters.c.reserved_tokens + reserved_tokens,
            reserved_cost=counters.c.reserved_cost + reserved_cost,
            spent_tokens=counters.c.spent_tokens + tokens,
            spent_cost=counters.c.spent_cost + cost,
        )
    )


def ledger_insert(entry: LedgerEntry) -> Any:
    agent, model, day, given, cached, produced, cost = entry.line()
    return tables.usage_ledger.insert().values(
        namespace=entry.namespace,
        agent=agent,
        run_id=entry.run_id,
        model=model,
        day=day,
        input_tokens=given,
        cached_input_tokens=cached,
        output_tokens=produced,
        cost=cost,
        created_at=entry.created_at,
    )


class _NoRoom(Exception):
    def __init__(self, line: BudgetLine) -> None:
        self.line = line


class SqlLedger(SqlCore):
    """The store's ledger calls, over the core's engine."""

    async def record_usage(self, entry: LedgerEntry) -> None:
        """A ledger line on its own (a model call's usually goes in with its event)."""
        if self._writer is not None:
            await self._write(lambda conn: on_sqlite.insert_ledger(conn, entry))
            return
        async with self.writing() as conn:
            await conn.execute(ledger_insert(entry))

    async def usage_summary(
        self,
        namespace: str,
        group_by: Sequence[str],
        *,
        since: str | None = None,
        until: str | None = None,
        agent: str | None = None,
        model: str | None = None,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        ledger = tables.usage_ledger
        columns = {
            "namespace": ledger.c.namespace,
            "agent": ledger.c.agent,
            "model": ledger.c.model,
            "run": ledger.c.run_id,
            "day": ledger.c.day,
        }
        keys = [columns[name].label(name) for name in group_by]
        query = sa.select(
            *keys,
            sa.func.count().label("calls"),
            sa.func.sum(ledger.c.input_tokens).label("input_tokens"),
            sa.func.sum(ledger.c.cached_input_tokens).label("cached_input_tokens"),
            sa.func.sum(ledger.c.output_tokens).label("output_tokens"),
            sa.func.sum(ledger.c.cost).label("cost"),
        ).where(ledger.c.namespace == namespace)
        for column, value in (
            (ledger.c.agent, agent),
            (ledger.c.model, model),
            (ledger.c.run_id, run_id),
        ):
            if value is not None:
                query = query.where(column == value)
        if since is not None:
            query = query.where(ledger.c.day >= since)
        if until is not None:
            query = query.where(ledger.c.day <= until)
        if keys:
            query = query.group_by(*keys).order_by(*keys)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            {
                **{name: row[name] for name in group_by},
                "calls": int(row["calls"]),
                "input_tokens": int(row["input_tokens"] or 0),
                "cached_input_tokens": int(row["cached_input_tokens"] or 0),
                "output_tokens": int(row["output_tokens"] or 0),
                "cost": round(float(row["cost"] or 0.0), 10),
            }
            for row in rows
            if row["calls"]
        ]

    async def reserve_budget(
        self, lines: Sequence[BudgetLine], tokens: int, cost: float, *, run_id: str | None = None
    ) -> BudgetLine | None:
        try:
            async with self.writing() as conn:
                await self._reserve(conn, lines, tokens, cost)
                if run_id is not None:
                    stamp = now()
                    await conn.execute(
                        tables.budget_holds.insert(),
                        [
                            {
                                "run_id": run_id,
                                "key": line.key,
                                "tokens": tokens,
                                "cost": cost,
                                "created_at": stamp,
                            }
                            for line in lines
                        ],
                    )
        except _NoRoom as full:
            return full.line  # the whole reservation was rolled back
        return None

    async def _reserve(
        self, conn: Any, lines: Sequence[BudgetLine], tokens: int, cost: float
    ) -> None:
        counters = tables.budget_counters
        for line in lines:
            await self._ensure_counter(conn, line.key)
            room = counters.c.key == line.key
            if line.max_tokens is not None:
                room &= counters.c.spent_tokens + counters.c.reserved_tokens < line.max_tokens
            if line.max_cost is not None:
                room &= counters.c.spent_cost + counters.c.reserved_cost < line.max_cost
            # One conditional statement: row-locked on PostgreSQL, and SQLite has one
            # writer, so two reservations never both see the same room.
            done = await conn.execute(
                counters.update()
                .where(room)
                .values(
                    reserved_tokens=counters.c.reserved_tokens + tokens,
                    reserved_cost=counters.c.reserved_cost + cost,
                )
            )
            if done.rowcount == 0:
                raise _NoRoom(line)

    async def settle_budget(
        self,
        lines: Sequence[BudgetLine],
        reserved_tokens: int,
        reserved_cost: float,
        tokens: int,
        cost: float,
        *,
        run_id: str | None = None,
    ) -> None:
        holds = tables.budget_holds
        async with self.writing() as conn:
            for line in lines:
                held = (reserved_tokens, reserved_cost)
                if run_id is not None:
                    row = (
                        await conn.execute(
                            holds.delete()
                            .where((holds.c.run_id == run_id) & (holds.c.key == line.key))
                            .returning(holds.c.tokens, holds.c.cost)
                        )
                    ).first()
                    held = (0, 0.0) if row is None else (int(row[0]), float(row[1]))
                await change_counter(conn, line.key, -held[0], -held[1], tokens, cost)

    async def release_budget_holds(self, run_id: str) -> int:
        async with self.writing() as conn:
            return await release_holds(conn, {run_id})

    async def budget_spent(self, key: str) -> tuple[int, float]:
        counters = tables.budget_counters
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(counters.c.spent_tokens, counters.c.spent_cost).where(
                        counters.c.key == key
                    )
                )
            ).first()
        return (0, 0.0) if row is None else (int(row[0]), float(row[1]))

    async def _ensure_counter(self, conn: Any, key: str) -> None:
        counters = tables.budget_counters
        statement = self.dialect.insert_unless_present(counters)
        await conn.execute(
            statement.values(
                key=key, spent_tokens=0, spent_cost=0.0, reserved_tokens=0, reserved_cost=0.0
            )
        )

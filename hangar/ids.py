"""Ids and the clock: what every layer stamps its records with.

At the bottom so that the runtime, the gateway and memory need not import the store
to name a run or tell the time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def new_id(prefix: str) -> str:
    """A fresh id that says what it names: ``run_…``, ``ses_…``, ``mem_…``."""
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def now() -> datetime:
    """The time now, aware and in UTC, as every stored time is."""
    return datetime.now(UTC)


def utc(value: datetime | None) -> datetime | None:
    """A stored time as an aware UTC one (SQLite hands them back naive)."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)

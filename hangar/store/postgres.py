"""What the parts that talk to PostgreSQL through asyncpg directly (change notices,
the event fast path, the knowledge index) share with the SQLAlchemy store."""

from __future__ import annotations

import sqlalchemy as sa


def driver_dsn(url: str) -> str:
    """The store's SQLAlchemy URL (``postgresql+asyncpg://…``) as asyncpg takes it."""
    return (
        sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )

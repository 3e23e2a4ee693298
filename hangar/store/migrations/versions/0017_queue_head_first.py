"""The queued-runs index orders each namespace's runs as the claim takes them: the
highest priority first, then the oldest. The first entry of a namespace is its next
run, so one probe finds it, and the claim for a namespace is a plain walk of the
index (``ORDER BY priority DESC, created_at, id``), not a search for the top priority
and then for the oldest run at it.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"

QUEUED = sa.text("status = 'queued'")


def _queued_index(*columns: str) -> None:
    op.drop_index("ix_runs_queued", "runs")
    op.create_index(
        "ix_runs_queued",
        "runs",
        [sa.text(column) for column in columns],
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )


def upgrade() -> None:
    _queued_index("namespace", "priority DESC", "created_at", "id")


def downgrade() -> None:
    _queued_index("namespace", "priority", "created_at", "id")

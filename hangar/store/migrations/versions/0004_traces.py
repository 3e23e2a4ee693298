"""Spans of every run's trace, kept so a trace is readable without a collector; runs
remember the trace context they continue and where their time went.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    # One row per trace per flush, its spans as one JSON array: a run's ~30 spans
    # cost one insert, not thirty.
    op.create_table(
        "spans",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("spans", JSON, nullable=False),
    )
    op.create_index("ix_spans_trace", "spans", ["trace_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(64), nullable=True))
        batch.add_column(sa.Column("timing", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("timing")
        batch.drop_column("trace_context")
    op.drop_table("spans")

"""Batches: a JSONL file of requests, one run (or one error) per line.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_batches_namespace_created", "batches", ["namespace", "created_at"])
    op.create_table(
        "batch_items",
        sa.Column("batch_id", sa.String(32), primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("custom_id", sa.String(256), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("error", JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("batch_items")
    op.drop_table("batches")

"""Run priorities: a worker takes the highest priority first, then the oldest.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_runs_claim", "runs", ["status", "priority", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_claim", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("priority")

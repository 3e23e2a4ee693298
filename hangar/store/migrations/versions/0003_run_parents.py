"""Runs know the run that started them as a tool (agents as tools), and how deep.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("depth", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_runs_parent", "runs", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("depth")
        batch.drop_column("parent_id")

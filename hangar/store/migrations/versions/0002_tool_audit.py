"""The audit log of tool calls.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tool_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("agent", sa.String(63), nullable=False),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("tool", sa.String(128), nullable=False),
        sa.Column("arguments_sha256", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("duration_ms", sa.Float, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_tool_audit_namespace_created", "tool_audit", ["namespace", "created_at"])
    op.create_index("ix_tool_audit_run", "tool_audit", ["run_id"])


def downgrade() -> None:
    op.drop_table("tool_audit")

"""Sessions: a conversation whose runs follow one another, each seeing the ones before.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("agent", sa.String(63), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_sessions_namespace_updated", "sessions", ["namespace", "updated_at"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("session_id", sa.String(32), nullable=True))
    op.create_index("ix_runs_session", "runs", ["session_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_session", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("session_id")
    op.drop_index("ix_sessions_namespace_updated", "sessions")
    op.drop_table("sessions")

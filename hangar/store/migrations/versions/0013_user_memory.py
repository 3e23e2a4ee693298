"""Long-term memory of end users: a ``user`` on each run, the facts remembered about
each user, and a session's summary of its older turns.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0013"
down_revision = "0012"

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("user_id", sa.String(255), nullable=True))
    op.create_index("ix_runs_user", "runs", ["namespace", "user_id"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("summary", JSON, nullable=True))
    op.create_table(
        "user_memories",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("namespace", sa.String(63), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", JSON, nullable=False),
        sa.Column("run_id", sa.String(32), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_user_memories_user", "user_memories", ["namespace", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_memories_user", "user_memories")
    op.drop_table("user_memories")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("summary")
    op.drop_index("ix_runs_user", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("user_id")

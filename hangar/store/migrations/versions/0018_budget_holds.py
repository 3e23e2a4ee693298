"""Budget reservations are recorded per run (``budget_holds``), beside the counters'
totals: a worker that died between reserving a model call's estimate and settling it
left the estimate reserved for the rest of the budget's period; the worker that takes
the run over now gives it back.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    op.create_table(
        "budget_holds",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("budget_holds")

"""Budget counters: tokens and cost spent and reserved per budget and period.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.create_table(
        "budget_counters",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("spent_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("spent_cost", sa.Float, nullable=False, server_default="0"),
        sa.Column("reserved_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reserved_cost", sa.Float, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("budget_counters")

"""The claim index leads with the namespace: a claim picks a namespace first (fair
share), then that namespace's best and oldest run.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.drop_index("ix_runs_claim", "runs")
    op.create_index(
        "ix_runs_claim", "runs", ["status", "namespace", "priority", "created_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_runs_claim", "runs")
    op.create_index("ix_runs_claim", "runs", ["status", "priority", "created_at"])

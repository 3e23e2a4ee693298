"""The claim's indexes hold only the runs it looks at: queued runs (by namespace,
priority, age) and running ones (by namespace, lease). A claim walks the namespaces
with queued runs, counts each one's running runs and looks for expired leases; over
an index of every run those probes waded through finished runs, and a claim cost
1.1 ms of the database's CPU with two thousand runs in the table (0.36 ms now).

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    for name, columns, status in (
        ("ix_runs_queued", ["namespace", "priority", "created_at", "id"], "queued"),
        ("ix_runs_running", ["namespace", "lease_expires_at"], "running"),
    ):
        where = sa.text(f"status = '{status}'")
        op.create_index(name, "runs", columns, postgresql_where=where, sqlite_where=where)
    op.drop_index("ix_runs_claim", "runs")


def downgrade() -> None:
    op.create_index(
        "ix_runs_claim", "runs", ["status", "namespace", "priority", "created_at", "id"]
    )
    op.drop_index("ix_runs_running", "runs")
    op.drop_index("ix_runs_queued", "runs")

"""Keys have a role, an optional expiry, a revocation and a last use; runs, sessions
and batches remember the key that made them (a runner reads only its own); spans
remember their namespace (a caller's trace id continues only its own namespace's
trace). Keys made before roles: admin stays admin, the others become namespace
admins, which is what they could do.

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("role", sa.String(32), nullable=False, server_default="namespace-admin")
        )
        batch.add_column(sa.Column("expires_at", TS, nullable=True))
        batch.add_column(sa.Column("revoked_at", TS, nullable=True))
        batch.add_column(sa.Column("last_used_at", TS, nullable=True))
    op.execute("UPDATE api_keys SET role = 'admin' WHERE admin")
    op.create_index("ix_api_keys_namespace", "api_keys", ["namespace", "created_at"])
    for table in ("runs", "sessions", "batches"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("key_id", sa.String(32), nullable=True))
    with op.batch_alter_table("spans") as batch:
        batch.add_column(sa.Column("namespace", sa.String(63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spans") as batch:
        batch.drop_column("namespace")
    for table in ("batches", "sessions", "runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("key_id")
    op.drop_index("ix_api_keys_namespace", "api_keys")
    with op.batch_alter_table("api_keys") as batch:
        for column in ("last_used_at", "revoked_at", "expires_at", "role"):
            batch.drop_column(column)

"""Stored run events are announced by the store after its commit, not by a trigger in
the transaction that stores them: a NOTIFY holds a database-wide lock from commit until
the commit is flushed to disk, so the trigger made every event write of every worker
wait for the one before it (see ``hangar.store.notices.Announcer``).

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS hangar_event_stored ON run_events")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER hangar_event_stored AFTER INSERT ON run_events "
            "FOR EACH ROW EXECUTE FUNCTION hangar_notify_event()"
        )

"""Change notices on PostgreSQL: every stored run event, and every run that becomes
queued, is announced with NOTIFY on commit, so gateways and workers in other processes
hear of it at once instead of polling. SQLite (one machine) has no such thing.

Triggers, not application code, send them: nothing that writes an event can forget to,
and a transaction that rolls back announces nothing. The payload starts with the
table's schema so that stores sharing a database in different schemas ignore each
other's notices.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"

CHANNEL = "hangar_changes"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION hangar_notify_event() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', concat_ws(' ', TG_TABLE_SCHEMA, 'event',
                NEW.namespace, NEW.run_id, NEW.seq, NEW.type));
            RETURN NULL;
        END $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION hangar_notify_queued() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', concat_ws(' ', TG_TABLE_SCHEMA, 'queued',
                NEW.namespace, NEW.id));
            RETURN NULL;
        END $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER hangar_event_stored AFTER INSERT ON run_events "
        "FOR EACH ROW EXECUTE FUNCTION hangar_notify_event()"
    )
    op.execute(
        "CREATE TRIGGER hangar_run_queued AFTER INSERT OR UPDATE OF status ON runs "
        "FOR EACH ROW WHEN (NEW.status = 'queued') EXECUTE FUNCTION hangar_notify_queued()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS hangar_run_queued ON runs")
    op.execute("DROP TRIGGER IF EXISTS hangar_event_stored ON run_events")
    op.execute("DROP FUNCTION IF EXISTS hangar_notify_queued()")
    op.execute("DROP FUNCTION IF EXISTS hangar_notify_event()")

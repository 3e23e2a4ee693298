"""Run events are announced on a channel of their own (``hangar_events``), queued runs
stay on ``hangar_changes``: a worker process, which streams nothing to anyone, listens
to the queue only, instead of hearing every event of every run (four workers each
parsed every notice of the others' runs, and dispatch fell as workers were added).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"


def _event_function(channel: str) -> str:
    return f"""
        CREATE OR REPLACE FUNCTION hangar_notify_event() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{channel}', concat_ws(' ', TG_TABLE_SCHEMA, 'event',
                NEW.namespace, NEW.run_id, NEW.seq, NEW.type));
            RETURN NULL;
        END $$ LANGUAGE plpgsql
        """


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_event_function("hangar_events"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_event_function("hangar_changes"))

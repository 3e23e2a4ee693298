"""The schema, as SQLAlchemy Core tables. Alembic migrations create exactly this.

Every row carries its namespace: isolation between tenants is a property of the
data, not only of the queries.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)

metadata = sa.MetaData()

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("name", sa.String(253), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("role", sa.String(32), nullable=False, server_default="namespace-admin"),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
    sa.Column("last_used_at", TS, nullable=True),
    sa.Index("ix_api_keys_namespace", "namespace", "created_at"),
)

resources = sa.Table(
    "resources",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("uid", sa.String(36), nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("labels", JSON, nullable=False),
    sa.Column("annotations", JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

resource_versions = sa.Table(
    "resource_versions",
    metadata,
    sa.Column("namespace", sa.String(63), primary_key=True),
    sa.Column("kind", sa.String(63), primary_key=True),
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("uid", sa.String(36), nullable=False),
    sa.Column("spec_hash", sa.String(64), nullable=False),
    sa.Column("spec", JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("agent", sa.String(63), nullable=False),
    sa.Column("agent_generation", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(63), nullable=True),
    sa.Column("input", JSON, nullable=False),
    sa.Column("output", JSON, nullable=True),
    sa.Column("error", JSON, nullable=True),
    sa.Column("usage", JSON, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False, default=0),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("worker", sa.String(64), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS, nullable=True),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("parent_id", sa.String(32), nullable=True),
    sa.Column("depth", sa.Integer, nullable=False, default=0),
    sa.Column("trace_context", sa.String(64), nullable=True),
    sa.Column("timing", JSON, nullable=True),
    sa.Column("lease_expires_at", TS, nullable=True),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("session_id", sa.String(32), nullable=True),
    sa.Column("user_id", sa.String(255), nullable=True),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Index("ix_runs_status_created", "status", "created_at"),
    sa.Index("ix_runs_user", "namespace", "user_id"),
    sa.Index("ix_runs_session", "session_id", "created_at"),
    sa.Index("ix_runs_parent", "parent_id"),
    # The queue's own indexes hold only the runs a claim looks at (queued; running),
    # so they stay small however many finished runs the table keeps.
    sa.Index(
        "ix_runs_running",
        "namespace",
        "lease_expires_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
    sa.Index("ix_runs_namespace_created", "namespace", "created_at"),
)

# Each namespace's queued runs in the order the claim takes them (the first entry is
# the namespace's next run).
sa.Index(
    "ix_runs_queued",
    runs.c.namespace,
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    postgresql_where=sa.text("status = 'queued'"),
    sqlite_where=sa.text("status = 'queued'"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

tool_audit = sa.Table(
    "tool_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("agent", sa.String(63), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("tool", sa.String(128), nullable=False),
    sa.Column("arguments_sha256", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_tool_audit_namespace_created", "namespace", "created_at"),
    sa.Index("ix_tool_audit_run", "run_id"),
)

spans = sa.Table(
    "spans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trace_id", sa.String(32), nullable=False),
    sa.Column("spans", JSON, nullable=False),
    # The namespace whose work made them: a trace id a caller brings continues only
    # its own namespace's spans, whatever another namespace recorded under it.
    sa.Column("namespace", sa.String(63), nullable=True),
    sa.Index("ix_spans_trace", "trace_id"),
)

usage_ledger = sa.Table(
    "usage_ledger",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("agent", sa.String(63), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("model", sa.String(63), nullable=False),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("input_tokens", sa.Integer, nullable=False),
    sa.Column("cached_input_tokens", sa.Integer, nullable=False),
    sa.Column("output_tokens", sa.Integer, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_usage_namespace_day", "namespace", "day"),
    sa.Index("ix_usage_run", "run_id"),
)

budget_counters = sa.Table(
    "budget_counters",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("spent_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("spent_cost", sa.Float, nullable=False, default=0.0),
    sa.Column("reserved_tokens", sa.BigInteger, nullable=False, default=0),
    sa.Column("reserved_cost", sa.Float, nullable=False, default=0.0),
)

budget_holds = sa.Table(
    "budget_holds",
    metadata,
    # A run's reservation on a budget line while its model call is out: given back by
    # the worker that takes the run over if its worker died before settling.
    sa.Column("run_id", sa.String(32), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("tokens", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Index("ix_batches_namespace_created", "namespace", "created_at"),
)

batch_items = sa.Table(
    "batch_items",
    metadata,
    sa.Column("batch_id", sa.String(32), primary_key=True),
    sa.Column("line", sa.Integer, primary_key=True),
    sa.Column("custom_id", sa.String(256), nullable=False),
    sa.Column("run_id", sa.String(32), nullable=True),
    sa.Column("error", JSON, nullable=True),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("agent", sa.String(63), nullable=False),
    sa.Column("metadata", JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("summary", JSON, nullable=True),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Index("ix_sessions_namespace_updated", "namespace", "updated_at"),
)

user_memories = sa.Table(
    "user_memories",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("namespace", sa.String(63), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("embedding", JSON, nullable=False),
    sa.Column("run_id", sa.String(32), nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Index("ix_user_memories_user", "namespace", "user_id"),
)

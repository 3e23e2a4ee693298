"""Persistence: one ``Store`` protocol, one SQL implementation for SQLite and PostgreSQL."""

from hangar.store.base import (
    ApiKey,
    ApplyOutcome,
    ResourceVersion,
    RunEvent,
    RunRecord,
    RunStatus,
    Store,
    StoredResource,
    Usage,
)
from hangar.store.sql import SqlStore, new_id

__all__ = [
    "ApiKey",
    "ApplyOutcome",
    "ResourceVersion",
    "RunEvent",
    "RunRecord",
    "RunStatus",
    "SqlStore",
    "Store",
    "StoredResource",
    "Usage",
    "new_id",
]

"""Persistence: narrow protocols per concern, one SQL implementation for SQLite and PostgreSQL."""

from hangar.store.base import Store
from hangar.store.records import (
    ApiKey,
    ApplyOutcome,
    ResourceVersion,
    RunEvent,
    RunRecord,
    RunStatus,
    StoredResource,
)
from hangar.store.sql import SqlStore

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
]

"""The store on SQLAlchemy 2 async Core: one implementation for SQLite and PostgreSQL,
composed from one class per concern (each in its own module, over ``SqlCore``).

What differs between the databases is the ``Dialect`` (``dialect.py``); PostgreSQL's
hottest calls (the claim, a run's events and its end, spans) also go straight to the
driver's own pool, one statement each.
"""

from __future__ import annotations

from hangar.store.audit import SqlAuditLog
from hangar.store.batches import SqlBatches
from hangar.store.engine import SqlCore, _store_calls_run_whole
from hangar.store.events import SqlEventLog
from hangar.store.keys import SqlKeys
from hangar.store.ledger import SqlLedger
from hangar.store.memories import SqlMemories
from hangar.store.resources import SqlResources
from hangar.store.runs import SqlRunQueue
from hangar.store.sessions import SqlSessions
from hangar.store.spans import SqlSpans


@_store_calls_run_whole
class SqlStore(
    SqlResources,
    SqlKeys,
    SqlSessions,
    SqlMemories,
    SqlRunQueue,
    SqlEventLog,
    SqlAuditLog,
    SqlSpans,
    SqlLedger,
    SqlBatches,
    SqlCore,
):
    """The ``Store`` over a SQLAlchemy async URL: ``sqlite+aiosqlite`` or ``postgresql+asyncpg``."""

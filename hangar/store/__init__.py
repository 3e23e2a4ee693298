"""Persistence: narrow protocols per concern, one SQL implementation for SQLite and PostgreSQL.

Import from its modules: consumers take the protocols in `hangar.store.base` and the
records in `hangar.store.records`; only the composition root (`hangar.runtime.host`)
imports `hangar.store.sql`. Nothing is re-exported here, so that reading a record type
(the CLI reading events) does not load the SQL engine.
"""

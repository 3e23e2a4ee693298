"""Settings in one place: every setting is an environment variable ``HANGAR_…``.

The defaults run on a laptop with nothing configured: state under ``./.hangar``,
SQLite, the bundled local model.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HANGAR_", extra="ignore")

    home: Path = Path(".hangar")
    """Where the embedded state lives: the SQLite file, the admin key, client config."""

    database_url: str | None = None
    """SQLAlchemy URL; ``sqlite+aiosqlite:///…`` or ``postgresql+asyncpg://…``.
    Defaults to a SQLite file in ``home``."""

    database_schema: str | None = None
    """PostgreSQL schema for Hangar's tables (default: the connection's search path)."""

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 4
    """How many runs one process executes at once."""

    worker_idle_seconds: float | None = None
    """``hangar worker`` exits after this long with nothing to run (scale to zero: an
    autoscaler starts it again when the queue grows). Default: never."""

    namespace_max_running: int | None = None
    """At most this many runs running at once per namespace, over all workers
    (default: no limit). Queued runs wait; other namespaces go on."""

    lease_seconds: float = 30.0
    """How long a worker holds a run without renewing it: when a worker dies, its runs
    are taken over by another worker this long after its last heartbeat."""

    local_model_path: Path | None = None
    """A GGUF file for the ``local`` provider; defaults to the bundled SmolLM2."""

    local_model_threads: int | None = None
    local_model_context: int = 4096

    default_namespace: str = "default"

    nats_url: str | None = None
    """NATS server for Triggers on JetStream subjects, e.g. ``nats://127.0.0.1:4222``;
    without it such Triggers are idle."""

    telemetry: Literal["off", "stored", "otlp"] = "stored"
    """Traces: ``stored`` keeps every span in the store (and exports over OTLP when the
    standard ``OTEL_EXPORTER_OTLP_*`` variables are set); ``otlp`` exports always;
    ``off`` records nothing."""

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'hangar.db').absolute()}"

"""Settings in one place: every setting is an environment variable ``HANGAR_…``.

The defaults run on a laptop with nothing configured: state under ``./.hangar``,
SQLite, the bundled local model.
"""

from __future__ import annotations

import math
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
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
    workers: int = 1000
    """How many runs one process executes at once. A run waiting on its model costs a
    task and its messages, so this is high: what is scarce is limited where it is (a
    namespace's Quota, its live sandboxes, the local model's one call at a time)."""

    processes: int | None = Field(default=None, ge=1, le=256)
    """Server processes sharing the port (``hangar up``, ``hangar gateway``), each a
    whole gateway with its workers: Python runs one core per process. Default: one per
    core on PostgreSQL; one on SQLite (its one writer would make several processes
    queue, so more is refused there)."""

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

    admin_key: str | None = Field(default=None, repr=False)
    """The admin API key, chosen by the administrator (on Kubernetes, from a Secret):
    every gateway replica makes sure this key exists, instead of each minting its own
    into its ``home``. ``hgr_`` and at least 32 more characters."""

    nats_url: str | None = None
    """NATS server for Triggers on JetStream subjects, e.g. ``nats://127.0.0.1:4222``;
    without it such Triggers are idle."""

    admission_file: Path | None = None
    """The administrator's grants to namespaces (host MCP servers, server variables,
    folders, internal address ranges, sandbox ceilings); default ``home/admission.yaml``.
    Without the file no namespace is granted anything (see docs/security.md)."""

    max_body_bytes: int = 8 * 1024 * 1024
    """The largest request body, but for the routes that take files (their own limits)."""

    rate_limit_per_second: float = 100.0
    """Requests a key may make per second, on average (0: no limit), per gateway process."""
    rate_limit_burst: int = 1000
    """Requests a key may make at once before the rate applies."""

    metrics_auth: bool = False
    """``/metrics`` only with an admin key (it shows every namespace's figures)."""
    docs_auth: bool = False
    """The OpenAPI document and its pages only with an API key."""

    nats_subject_prefix: str = "hangar"
    """NATS Triggers listen on ``PREFIX.NAMESPACE.SUBJECT``: a namespace's subjects are
    its own, whatever it names."""

    webhook_tolerance_seconds: float = 300.0
    """How old a signed webhook's timestamp may be (or how far ahead): a request
    replayed later is refused."""

    telemetry: Literal["off", "stored", "otlp"] = "stored"
    """Traces: ``stored`` keeps every span in the store (and exports over OTLP when the
    standard ``OTEL_EXPORTER_OTLP_*`` variables are set); ``otlp`` exports always;
    ``off`` records nothing."""

    @cached_property
    def resolved_admission_file(self) -> Path:
        return self.admission_file or self.home / "admission.yaml"

    @cached_property
    def resolved_processes(self) -> int:
        if self.processes is not None:
            return self.processes
        return 1 if self.embedded_database else usable_cores()

    @property
    def embedded_database(self) -> bool:
        """SQLite: one process's own file, not a database server others share."""
        return self.resolved_database_url.startswith("sqlite")

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'hangar.db').absolute()}"


def usable_cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: those it may be scheduled on, and no more than
    its cgroup's CPU quota (a container limited to 2 CPUs on a 64-core node sees 64 in
    ``os.cpu_count()``, and 64 processes would share 2 cores' time)."""
    cores = len(os.sched_getaffinity(0))
    try:  # cgroup v2: "QUOTA PERIOD", or "max PERIOD" for no limit
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def state_file(path: Path) -> Path:
    """A file of the server's state (a database), readable by its owner alone: made
    0600 before a library creates it with the umask's 0644 (SQLite then gives its
    journal files the same mode), in a folder made 0700."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o600)
    return path

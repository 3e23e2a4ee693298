"""``hangar up``: one process with the gateway and in-process workers.

On first start it creates an admin API key, stores only its hash, and writes
the secret to ``HOME/admin.key`` (mode 0600) beside a ``client.json`` the CLI
reads, as kubectl reads its kubeconfig. The state folder is the server's alone
(0700, its files 0600), and ``hangar up`` writes the laptop's admission defaults
there on first start (``hangar.admission.default_config``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import uvicorn

from hangar.admission import write_default
from hangar.config import Settings
from hangar.errors import ConfigurationError, ConflictError
from hangar.gateway.app import create_app
from hangar.gateway.processes import check_processes, serve_processes
from hangar.roles import Role
from hangar.runtime.host import Runtime
from hangar.runtime.resolve import LOCAL_MODEL, LOCAL_MODEL_SPEC
from hangar.spec import API_VERSION, Model
from hangar.store.base import Store
from hangar.store.records import KEY_PREFIX

CLIENT_FILE = "client.json"
ADMIN_KEY_FILE = "admin.key"


def _write_private(path: Path, text: str) -> None:
    private_home(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # a file made before by someone else's umask


def private_home(home: Path) -> None:
    """The state folder, made (or narrowed) to its owner alone."""
    home.mkdir(parents=True, exist_ok=True)
    if home.stat().st_uid == os.geteuid():
        home.chmod(0o700)


async def _chosen_admin_key(store: Store, secret: str, namespace: str) -> str:
    """The administrator's admin key (``HANGAR_ADMIN_KEY``), stored if it is not yet:
    replicas starting together race to store it, and the losers find it stored."""
    secret = secret.strip()
    if not secret.startswith(KEY_PREFIX) or len(secret) < len(KEY_PREFIX) + 32:
        raise ConfigurationError(
            "HANGAR_ADMIN_KEY must be 'hgr_' and at least 32 more characters",
            hint="make one with: echo hgr_$(openssl rand -hex 24)",
        )
    found = await store.authenticate(secret)
    unusable = None if found is None else found.unusable(datetime.now(UTC))
    if found is not None and (not found.admin or unusable):
        raise ConfigurationError(
            f"HANGAR_ADMIN_KEY is the secret of a key that {unusable or 'is not an admin key'}",
            hint="choose a new secret for the admin key",
        )
    if found is None:
        with contextlib.suppress(ConflictError):
            await store.create_api_key(namespace, "admin", role=Role.ADMIN, secret=secret)
    return secret


async def bootstrap(runtime: Runtime) -> str:
    """Migrate, make sure the admin key and the ``local`` Model exist; return the key."""
    settings = runtime.settings
    store = runtime.store
    private_home(settings.home)
    await store.migrate()
    key_file = settings.home / ADMIN_KEY_FILE
    if settings.admin_key is not None:
        secret = await _chosen_admin_key(store, settings.admin_key, settings.default_namespace)
    else:
        secret = key_file.read_text().strip() if key_file.exists() else ""
        if not secret or await store.authenticate(secret) is None:
            _, secret = await store.create_api_key(
                settings.default_namespace, "admin", role=Role.ADMIN
            )
    _write_private(key_file, secret + "\n")
    local = Model.model_validate(
        {
            "apiVersion": API_VERSION,
            "kind": "Model",
            "metadata": {"name": LOCAL_MODEL},
            "spec": LOCAL_MODEL_SPEC.model_dump(mode="json", by_alias=True, exclude_defaults=True),
        }
    )
    if await store.get_resource(settings.default_namespace, Model.KIND, LOCAL_MODEL) is None:
        with contextlib.suppress(ConflictError):  # a replica starting beside this one did
            await store.apply_resource(settings.default_namespace, local)
    return secret


def serve(settings: Settings, *, workers: int | None = None, embedded: bool = False) -> None:
    """Run the gateway (and ``workers`` run slots; default: ``HANGAR_WORKERS``; 0: a
    gateway only, for a deployment with separate worker processes). ``embedded``
    (``hangar up``): on a laptop, grant the ``default`` namespace its owner's folder
    and provider variables unless an admission file exists already."""
    processes = settings.resolved_processes
    check_processes(settings, processes)
    if embedded and write_default(settings.resolved_admission_file, Path.cwd()):
        print(f"  wrote {settings.resolved_admission_file}: what namespaces are granted")

    async def bootstrapped() -> str:
        # On a runtime of its own, closed after: its store's connections belong to
        # this event loop, and the server gets a fresh one on its own loop.
        first = Runtime(settings)
        try:
            return await bootstrap(first)
        finally:
            await first.stop()

    secret = asyncio.run(bootstrapped())
    host = settings.host
    url = f"http://{host}:{settings.port}"
    _write_private(settings.home / CLIENT_FILE, json.dumps({"url": url, "api_key": secret}) + "\n")
    print(f"Hangar {url}", flush=True)
    print(f"  admin API key: {secret}", flush=True)
    print(f"  state: {settings.resolved_database_url}", flush=True)
    print(f"  OpenAI base URL: {url}/v1", flush=True)
    if processes > 1:
        print(f"  {processes} server processes", flush=True)
        sys.exit(serve_processes(settings, processes, workers))
    runtime = Runtime(settings)
    uvicorn.run(
        create_app(runtime, workers=workers),
        host=host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


def work(settings: Settings) -> None:
    """A worker process: runs queued runs from the shared store, serves no HTTP. Any
    number of these, and of gateways, share one PostgreSQL."""

    async def main() -> None:
        runtime = Runtime(settings)
        await runtime.start(streams=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"Hangar worker {runtime.worker.id}: {settings.workers} run slots", flush=True)
        idle_limit = settings.worker_idle_seconds
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1):
                        await stop.wait()
                if idle_limit is not None and runtime.worker.idle_seconds() > idle_limit:
                    print(f"idle for {idle_limit:g} s: exiting (scale to zero)", flush=True)
                    break
        finally:
            await runtime.stop()

    asyncio.run(main())

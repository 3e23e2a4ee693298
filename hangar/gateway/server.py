"""``hangar up``: one process with the gateway and in-process workers.

On first start it creates an admin API key, stores only its hash, and writes
the secret to ``HOME/admin.key`` (mode 0600) beside a ``client.json`` the CLI
reads, as kubectl reads its kubeconfig.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import uvicorn

from hangar.config import Settings
from hangar.gateway.app import create_app
from hangar.runtime.host import Runtime
from hangar.runtime.resolve import LOCAL_MODEL, LOCAL_MODEL_SPEC
from hangar.spec import API_VERSION, Model

CLIENT_FILE = "client.json"
ADMIN_KEY_FILE = "admin.key"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


async def bootstrap(runtime: Runtime) -> str:
    """Migrate, make sure the admin key and the ``local`` Model exist; return the key."""
    settings = runtime.settings
    store = runtime.store
    await store.migrate()
    key_file = settings.home / ADMIN_KEY_FILE
    secret = key_file.read_text().strip() if key_file.exists() else ""
    if not secret or await store.authenticate(secret) is None:
        _, secret = await store.create_api_key(settings.default_namespace, "admin", admin=True)
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
        await store.apply_resource(settings.default_namespace, local)
    return secret


def serve(settings: Settings) -> None:
    runtime = Runtime(settings)
    secret = asyncio.run(bootstrap(runtime))
    # bootstrap ran on its own event loop; the server gets a fresh store on its loop.
    runtime = Runtime(settings)
    host = settings.host
    url = f"http://{host}:{settings.port}"
    _write_private(settings.home / CLIENT_FILE, json.dumps({"url": url, "api_key": secret}) + "\n")
    print(f"Hangar {url}", flush=True)
    print(f"  admin API key: {secret}", flush=True)
    print(f"  state: {settings.resolved_database_url}", flush=True)
    print(f"  OpenAI base URL: {url}/v1", flush=True)
    uvicorn.run(
        create_app(runtime),
        host=host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )

"""Test helpers: a real Hangar server on a free port, documents, polling."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from hangar.admission import default_config
from hangar.config import Settings
from hangar.gateway.app import create_app
from hangar.gateway.server import bootstrap
from hangar.ids import new_id, now
from hangar.runtime.host import Runtime
from hangar.runtime.worker import Worker
from hangar.spec import API_VERSION
from hangar.store.base import Store
from hangar.store.records import RunRecord, RunStatus

T = TypeVar("T")
ROOT = Path(__file__).parents[1]
EVERYTHING = ROOT / "tests/tools/mcp_servers/node_modules/.bin/mcp-server-everything"
CATALOG = [
    {
        "name": "workbench",
        "command": sys.executable,
        "args": ["-m", "tests.tools.mcp_servers.workbench"],
        "cwd": str(ROOT),
        "tenantEnv": ["WORKBENCH_TOKEN"],
        "namespaces": ["default"],
    },
    {"name": "everything", "command": str(EVERYTHING), "namespaces": ["default"]},
    {"name": "time", "command": sys.executable, "args": ["-m", "mcp_server_time"]},
]
"""The tests' administrator's catalog of host MCP servers: the real servers the tests
use, run on the host as an administrator would run them."""


def worker_on(store: Store, settings: Settings) -> Worker:
    """A worker over ``store``, composed as the runtime composes it (its slots not
    started)."""
    return Runtime(settings, store=store).worker


def trusted(**extra: Any) -> dict[str, Any]:
    """What the tests' administrator grants their own ``default`` namespace: the host's
    loopback (the fake model and MCP servers the tests start), folders under /tmp and
    the repository, and ``extra`` (catalog servers, variables). Other namespaces get
    nothing, as in production."""
    own = ["default"]
    config: dict[str, Any] = default_config(ROOT)  # what `hangar up` grants on a laptop
    config["egress"] = [
        {"cidr": "127.0.0.0/8", "namespaces": own},
        {"cidr": "::1/128", "namespaces": own},
    ]
    config["folders"].append({"path": "/tmp", "namespaces": own})
    config["mcpServers"] = list(CATALOG)
    for key, value in extra.items():
        config[key] = [*config.get(key, []), *value]
    return config


def write_admission(home: Path, config: dict[str, Any]) -> Path:
    """The admission file a server with this home reads."""
    import yaml

    home.mkdir(parents=True, exist_ok=True)
    path = home / "admission.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], timeout: float = 30, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def serving(app: Any, what: str = "the test's server") -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what=what)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def ingested(api: httpx.Client, base: str, name: str, content: bytes) -> dict[str, Any]:
    """Upload one file into knowledge base ``base``; return its ingestion, succeeded."""
    parts = [("file", (name, content))]
    job = api.post(f"/v1/knowledgebases/{base}/ingestions", files=parts).json()
    url = f"/v1/knowledgebases/{base}/ingestions/{job['id']}"

    def succeeded() -> dict[str, Any] | None:
        found: dict[str, Any] = api.get(url).json()
        return found if found["status"] == "succeeded" else None

    return wait_until(succeeded, what=f"the ingestion of {name} into {base}")


async def eventually(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 30, what: str = "condition"
) -> T:
    """``wait_until`` for async tests: polls without blocking the event loop; the
    predicate may be a coroutine function (a query)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        value: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def doc(kind: str, name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, **metadata},
        "spec": spec,
    }


def scripted_model(name: str, *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return doc("Model", name, {"provider": "scripted", "script": list(steps), **extra})


def agent(name: str, model: str, **spec: Any) -> dict[str, Any]:
    return doc("Agent", name, {"model": model, **spec})


def queued_run(namespace: str = "default", agent: str = "support", **fields: Any) -> RunRecord:
    """A run record as a gateway queues it (one user message), for store-level tests."""
    return RunRecord(
        **{
            "id": new_id("run"),
            "namespace": namespace,
            "agent": agent,
            "agent_generation": 1,
            "status": RunStatus.QUEUED,
            "input": {"messages": [{"role": "user", "content": "hi"}]},
            "created_at": now(),
            **fields,
        }
    )


def tool_step(name: str, **arguments: Any) -> dict[str, Any]:
    """A scripted model step that calls one tool."""
    return {"toolCalls": [{"name": name, "arguments": arguments}]}


def events(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    """A run's stored events, over the API."""
    return list(api.get(f"/v1/runs/{run_id}/events").json()["items"])


def event_data(api: httpx.Client, run_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of a run's events of one kind, in order."""
    return [e["data"] for e in events(api, run_id) if e["type"] == kind]


class ServerThread:
    """A real Hangar (gateway + workers) serving HTTP on 127.0.0.1, in a thread with its
    own event loop, as `hangar up` runs it."""

    def __init__(
        self,
        home: Path,
        database_url: str | None = None,
        workers: int = 4,
        span_processors: Sequence[Any] = (),
        database_schema: str | None = None,
        admission: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        write_admission(home, trusted() if admission is None else admission)
        self.span_processors = span_processors
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = Settings(
            home=home,
            database_url=database_url,
            database_schema=database_schema,
            port=self.port,
            workers=workers,
            **{"rate_limit_per_second": 0, **settings},
        )
        self.admin_key = ""
        self._ready = threading.Event()
        self._server: uvicorn.Server | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        runtime = Runtime(self.settings, span_processors=self.span_processors)
        self.runtime = runtime
        self.admin_key = await bootstrap(runtime)
        config = uvicorn.Config(
            create_app(runtime), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._ready.set()
        await self._server.serve()

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(30)
        if self._error:
            raise self._error
        wait_until(lambda: self._server is not None and self._server.started, what="server start")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(30)

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key or self.admin_key}"},
            timeout=60,
        )


BIN = Path(sys.executable).parent


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No provider keys, no Hangar overrides: only what a fresh shell has (and
    ``extra``)."""
    drop = ("HANGAR_", "OPENAI_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["HANGAR_HOME"] = str(home)
    env["COLUMNS"] = "200"
    return env | extra


class Up:
    """``hangar up`` for real: its own process, started as a user starts it, in the
    repository (so the examples' folder is the one it grants)."""

    def __init__(self, home: Path, **env: str) -> None:
        self.home = home
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"up-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Up:
        self.proc = subprocess.Popen(
            [str(BIN / "hangar"), "up", "--port", str(self.port)],
            env=clean_env(self.home, **self.env),
            cwd=ROOT,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, what="hangar up")
        return self

    @property
    def admin_key(self) -> str:
        return (self.home / "admin.key").read_text().strip()

    def rss_mb(self) -> float:
        """The server process's resident memory, in MiB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(30)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "hangar"), *args],
            env=clean_env(self.home, **self.env),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )

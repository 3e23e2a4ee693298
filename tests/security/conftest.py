"""The hostile tenant's world: a real ``hangar up`` (its own process, as a user starts
it), the administrator's admission file granting a little to namespace ``trusted``
and nothing to ``tenant``, a ``tenant`` key of its own namespace's highest role, a
``victim`` namespace with data of its own, and listeners on the host's loopback that
count every connection made to them (a tenant's request reaching them is a breach)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import Up, agent, doc, scripted_model

CEILINGS = {
    "namespaces": ["*"],
    "cpuSeconds": 30,
    "wallSeconds": 60,
    "memoryMb": 1024,
    "processes": 128,
    "workspaceMb": 256,
    "warmPool": 1,
    "warmPoolTotal": 1,
    "sandboxes": 3,
}


class Listener:
    """A TCP service on the host's loopback that counts who connects: the server's own
    PostgreSQL or metrics, as far as a tenant can tell."""

    def __init__(self, family: socket.AddressFamily = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.connections += 1
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
                conn.close()

    def close(self) -> None:
        self.sock.close()


class World:
    def __init__(self, up: Up, granted: Path) -> None:
        self.up = up
        self.url = up.url
        self.granted = granted
        """A folder the administrator granted ``tenant`` (its knowledge may read it)."""
        with self.admin() as admin:
            self.tenant_key = self.key(admin, "tenant", "namespace-admin")
            self.victim_key = self.key(admin, "victim", "namespace-admin")

    @staticmethod
    def key(admin: httpx.Client, namespace: str, role: str) -> str:
        made = admin.post("/v1/keys", json={"namespace": namespace, "role": role})
        made.raise_for_status()
        return str(made.json()["key"])

    def client(self, key: str, **headers: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key}", **headers},
            timeout=120,
        )

    def admin(self) -> httpx.Client:
        return self.client(self.up.admin_key)

    def tenant(self) -> httpx.Client:
        return self.client(self.tenant_key)

    def victim(self) -> httpx.Client:
        return self.client(self.victim_key)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("security")
    home = root / ".hangar"
    home.mkdir()
    granted = root / "granted"
    granted.mkdir()
    admission: dict[str, Any] = {
        "environment": [{"names": ["HANGAR_TRUSTED_KEY"], "namespaces": ["trusted"]}],
        "folders": [{"path": str(granted), "namespaces": ["tenant"]}],
        "sandboxes": [CEILINGS],
    }
    (home / "admission.yaml").write_text(yaml.safe_dump(admission))
    up = Up(home, HANGAR_TRUSTED_KEY="sk-trusted").start()
    try:
        world = World(up, granted)
        with world.victim() as victim:
            victim.post(
                "/v1/apply",
                json=[
                    doc("Secret", "vault", {"data": {"token": "victim-token-5e1d"}}),
                    scripted_model("m", {"text": "victim's answer"}),
                    agent("private", "m"),
                ],
            ).raise_for_status()
        yield world
    finally:
        up.stop()


@pytest.fixture
def tenant(world: World) -> Iterator[httpx.Client]:
    with world.tenant() as client:
        yield client


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    try:
        yield found
    finally:
        found.close()


def loopback_name() -> str:
    """A name (not 'localhost', which is refused when applied) that this machine
    resolves to its loopback, as a rebinding name would: the host's own name."""
    for name in (socket.gethostname(), "runsc", "ip6-localhost", "localhost.localdomain"):
        with contextlib.suppress(OSError):
            if socket.gethostbyname(name).startswith("127."):
                return name
    raise AssertionError("no name of this machine resolves to its loopback")


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """A clear JSON refusal: the status, the stable code, a message that says why."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error

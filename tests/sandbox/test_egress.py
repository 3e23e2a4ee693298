"""Network mode ``allowlist``: a sandbox reaches the hosts its template lists, over
HTTP and HTTPS (CONNECT) through the host's egress proxy, and nothing else."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pydantic import ValidationError

from hangar.egress import AddressPolicy
from hangar.sandbox.base import ExecStatus
from hangar.sandbox.egress import BadRequest, parse_head
from hangar.sandbox.teardown import settle_teardowns
from hangar.spec.sandbox import SandboxTemplateSpec
from tests.sandbox.conftest import StartSandbox


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from the host, you asked for {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def host_port() -> Iterator[int]:
    """A web server on the host's loopback: outside every sandbox's own network."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


LOOPBACK = AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),))
"""The test server listens on the host's loopback: only a namespace granted it may
reach it, even through the proxy."""


def request(host: str, port: int, tunnel: bool) -> str:
    """Code that asks the proxy for ``host:port``: a CONNECT tunnel, or plain HTTP."""
    if tunnel:
        return (
            "import http.client\n"
            "c = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n"
            f"c.set_tunnel({host!r}, {port})\n"
            "c.request('GET', '/')"
        )
    return f"import urllib.request\nurllib.request.urlopen('http://{host}:{port}/')"


def allow(*hosts: str, policy: AddressPolicy = LOOPBACK) -> dict[str, object]:
    return {"network": {"mode": "allowlist", "allowHosts": list(hosts)}, "policy": policy}


async def test_an_allowed_host_answers_over_plain_http(
    start_process: StartSandbox, host_port: int
) -> None:
    sandbox = await start_process(**allow(f"127.0.0.1:{host_port}"))
    code = f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{host_port}/a?b=1').read()"
    result = await sandbox.run_python(code, timeout=20)
    assert result.status == ExecStatus.OK, result
    assert "hello from the host, you asked for /a?b=1" in (result.value or "")


async def test_an_allowed_host_answers_through_a_connect_tunnel(
    start_process: StartSandbox, host_port: int
) -> None:
    """What HTTPS clients do: CONNECT host:port, then talk end to end through it."""
    sandbox = await start_process(**allow(f"127.0.0.1:{host_port}"))
    code = (
        "import http.client, os\n"
        "proxy = os.environ['HTTPS_PROXY'].removeprefix('http://').split(':')\n"
        "c = http.client.HTTPConnection(proxy[0], int(proxy[1]), timeout=10)\n"
        f"c.set_tunnel('127.0.0.1', {host_port})\n"
        "c.request('GET', '/tunnel')\n"
        "c.getresponse().read()"
    )
    result = await sandbox.run_python(code, timeout=20)
    assert result.status == ExecStatus.OK, result
    assert "you asked for /tunnel" in (result.value or "")


async def test_programs_run_from_the_shell_use_the_proxy_too(
    start_process: StartSandbox, host_port: int
) -> None:
    sandbox = await start_process(**allow(f"127.0.0.1:{host_port}"))
    fetch = f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{host_port}/sh').read())"
    result = await sandbox.run_shell(f'python3 -c "{fetch}"', timeout=20)
    assert result.status == ExecStatus.OK, result
    assert "you asked for /sh" in result.stdout


@pytest.mark.parametrize("tunnel", [False, True], ids=["http", "connect"])
async def test_a_host_off_the_list_is_denied_with_the_policy_named(
    start_process: StartSandbox, host_port: int, tunnel: bool
) -> None:
    sandbox = await start_process(**allow("pypi.org", "*.example.com"))
    result = await sandbox.run_python(request("127.0.0.1", host_port, tunnel), timeout=20)
    assert result.status == ExecStatus.DENIED, result
    assert "Hangar egress policy" in (result.error or "")


async def test_connections_that_skip_the_proxy_go_nowhere(
    start_process: StartSandbox, host_port: int
) -> None:
    """Even to an allowed host: the sandbox's loopback is its own, and it has no route."""
    sandbox = await start_process(**allow(f"127.0.0.1:{host_port}", "1.1.1.1"))
    for target in (("127.0.0.1", host_port), ("1.1.1.1", 443)):
        code = f"import socket\nsocket.create_connection({target!r}, timeout=3)"
        result = await sandbox.run_python(code, timeout=10)
        assert result.status in (ExecStatus.DENIED, ExecStatus.ERROR), result


@pytest.mark.parametrize("tunnel", [False, True], ids=["http", "connect"])
async def test_an_allowed_name_on_an_address_not_granted_is_denied(
    start_process: StartSandbox, host_port: int, tunnel: bool
) -> None:
    """The template names the host, but its address is the server's loopback, which the
    namespace was not granted: the proxy refuses it, whatever the name (here a name
    that resolves to 127.0.0.1, as a rebinding name would)."""
    sandbox = await start_process(**allow(f"localhost:{host_port}", policy=AddressPolicy()))
    result = await sandbox.run_python(request("localhost", host_port, tunnel), timeout=20)
    assert result.status == ExecStatus.DENIED, result
    assert "Hangar egress policy" in (result.error or "")
    assert sandbox.egress.denied_hosts == ["localhost"]  # type: ignore[attr-defined]


async def test_a_port_the_pattern_does_not_name_is_denied(
    start_process: StartSandbox, host_port: int
) -> None:
    """A bare host admits 80 and 443 only: a tenant cannot reach the host's other
    services (a database, a metrics port) through a name it was allowed."""
    sandbox = await start_process(**allow("127.0.0.1"))
    code = f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{host_port}/')"
    result = await sandbox.run_python(code, timeout=20)
    assert result.status == ExecStatus.DENIED, result


async def test_the_proxy_closes_with_its_sandbox(start_process: StartSandbox) -> None:
    sandbox = await start_process(**allow("127.0.0.1:80"))
    proxy = sandbox.egress  # type: ignore[attr-defined]
    socket_path = proxy.socket_path
    assert socket_path.exists()
    await sandbox.kill()
    await settle_teardowns()
    assert not socket_path.exists()


def test_the_proxy_reads_both_request_forms() -> None:
    connect = parse_head(b"CONNECT pypi.org:443 HTTP/1.1\r\nHost: pypi.org:443\r\n\r\n")
    assert (connect.host, connect.port, connect.forward) == ("pypi.org", 443, None)
    plain = parse_head(
        b"GET http://example.com:8080/x?y=1 HTTP/1.1\r\nHost: example.com\r\n"
        b"Proxy-Connection: keep-alive\r\nConnection: keep-alive\r\n\r\n"
    )
    assert (plain.host, plain.port) == ("example.com", 8080)
    assert plain.forward == (
        b"GET /x?y=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    )
    for bad in (
        b"GET /relative HTTP/1.1\r\n\r\n",
        b"CONNECT nohost HTTP/1.1\r\n\r\n",
        b"hi\r\n\r\n",
    ):
        with pytest.raises(BadRequest):
            parse_head(bad)


@pytest.mark.parametrize(
    ("network", "backend", "problem"),
    [
        ({"mode": "none", "allowHosts": ["pypi.org"]}, "bwrap", "set mode: allowlist"),
        ({"mode": "allowlist", "allowHosts": ["pypi.org"]}, "wasm", "has no network"),
        ({"mode": "allowlist", "allowHosts": ["https://pypi.org/simple"]}, "bwrap", "URL"),
        ({"mode": "allowlist", "allowHosts": ["pypi.org:99999"]}, "bwrap", "port"),
    ],
)
def test_network_settings_that_cannot_work_are_refused_when_applied(
    network: dict[str, object], backend: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        SandboxTemplateSpec.model_validate({"backend": backend, "network": network})

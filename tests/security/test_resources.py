"""A tenant spends the server's memory, CPU and processes: huge bodies, a body
without a key, bombs that expand when read, sandbox limits past the ceilings. Each
gets a clear refusal, and the server's memory stays within a bound."""

from __future__ import annotations

import io
import socket
import tarfile
import time
import zipfile

import httpx
import pytest

from tests.helpers import doc
from tests.sandbox.test_hostile import NESTED_NAMESPACES
from tests.security.conftest import World, refused

GROWTH_MB = 150
"""How much the server's resident memory may grow while it refuses an attack."""


def send_unread(world: World, path: str, size: int, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST ``size`` bytes (declared), sending them as fast as the server takes them;
    the status and body the server answers with, having read what it chose to."""
    sock = socket.create_connection(("127.0.0.1", world.up.port))
    head = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {size}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sock.settimeout(0.5)
    chunk, sent, answer = b"\0" * (1 << 20), 0, b""
    while sent < size:
        try:
            sock.sendall(chunk)
            sent += len(chunk)
        except OSError:  # the server answered and closed: no more is read
            break
        try:
            answer += sock.recv(65536)
            if answer:
                break
        except TimeoutError:
            continue
    sock.settimeout(10)
    while b"\r\n\r\n" not in answer or not answer.split(b"\r\n\r\n", 1)[1].endswith(b"}"):
        more = sock.recv(65536)
        if not more:
            break
        answer += more
    sock.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_a_gigabyte_without_a_key_is_refused_before_it_is_read(world: World) -> None:
    before = world.up.rss_mb()
    status, body = send_unread(world, "/v1/apply", 1 << 30, {"Content-Type": "application/json"})
    assert status == 413 or status == 401, body  # too large for the route, or no key
    assert world.up.rss_mb() - before < GROWTH_MB
    status, body = send_unread(world, "/v1/batches", 90 * 1000 * 1000, {})
    assert status == 401 and b'"unauthenticated"' in body
    assert world.up.rss_mb() - before < GROWTH_MB


def test_a_body_over_the_routes_limit_is_refused_with_a_key(world: World) -> None:
    auth = {"Authorization": f"Bearer {world.tenant_key}", "Content-Type": "application/json"}
    before = world.up.rss_mb()
    status, body = send_unread(world, "/v1/agents/x/runs", 400 * 1000 * 1000, auth)
    assert status == 413 and b'"payload_too_large"' in body
    assert world.up.rss_mb() - before < GROWTH_MB


def zeros_zip(megabytes: int) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.bin", "w") as member,
    ):
        block = b"\0" * (1 << 20)
        for _ in range(megabytes):
            member.write(block)
    return out.getvalue()


def zeros_tar_gz(megabytes: int) -> bytes:
    import gzip

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("zeros.bin")
        info.size = megabytes << 20
        archive.addfile(info, io.BytesIO(b"\0" * info.size))
    return gzip.compress(raw.getvalue(), 9)


@pytest.mark.parametrize("bomb", [zeros_zip, zeros_tar_gz], ids=["zip", "tar.gz"])
def test_an_archive_bomb_is_refused_before_it_expands(
    world: World, tenant: httpx.Client, bomb
) -> None:  # type: ignore[no-untyped-def]
    data = bomb(300)
    assert len(data) < 1 << 20  # a few hundred kilobytes that unpack to 300 MB
    sandbox = tenant.post("/v1/sandboxes", json={"backend": "bwrap"}).json()
    try:
        before = world.up.rss_mb()
        error = refused(
            tenant.post(f"/v1/sandboxes/{sandbox['id']}/archive", content=data),
            422,
            "sandbox_file_error",
        )
        assert "unpacks to more than" in error["message"]
        assert world.up.rss_mb() - before < GROWTH_MB
        files = tenant.get(f"/v1/sandboxes/{sandbox['id']}/files").json()["items"]
        assert files == []
    finally:
        tenant.delete(f"/v1/sandboxes/{sandbox['id']}")


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
kind: [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def test_a_yaml_alias_bomb_is_refused_in_a_small_answer(tenant: httpx.Client) -> None:
    assert len(ALIAS_BOMB) < 500
    response = tenant.post(
        "/v1/apply", content=ALIAS_BOMB, headers={"Content-Type": "application/yaml"}
    )
    error = refused(response, 422, "invalid_yaml")
    assert "aliases" in error["message"]
    assert len(response.content) < 2000


def test_a_huge_value_is_never_echoed_whole(tenant: httpx.Client) -> None:
    document = {"apiVersion": "hangar.dev/v1alpha1", "kind": "x" * 1_000_000, "metadata": {}}
    response = tenant.post("/v1/apply", json=document)
    refused(response, 422, "unknown_kind")
    assert len(response.content) < 5000


def test_sandbox_limits_past_the_ceilings_are_refused(tenant: httpx.Client) -> None:
    for spec, field in (
        ({"limits": {"memoryMb": 10_000_000}}, "spec.limits.memoryMb"),
        ({"limits": {"cpuSeconds": 10_000}}, "spec.limits.cpuSeconds"),
        ({"limits": {"cpus": 64}}, "spec.limits.cpus"),
        ({"warmPool": 50}, "spec.warmPool"),
    ):
        error = refused(
            tenant.post("/v1/apply", json=doc("SandboxTemplate", "big", spec)),
            403,
            "admission_denied",
        )
        assert field in error["message"]
    # Within each template's ceiling, but past the namespace's in all.
    tenant.post(
        "/v1/apply", json=doc("SandboxTemplate", "warm-a", {"warmPool": 1})
    ).raise_for_status()
    error = refused(
        tenant.post("/v1/apply", json=doc("SandboxTemplate", "warm-b", {"warmPool": 1})),
        403,
        "admission_denied",
    )
    assert "warm sandboxes" in error["message"]
    tenant.delete("/v1/resources/sandboxtemplates/warm-a")


def test_a_namespace_holds_at_most_its_ceiling_of_live_sandboxes(tenant: httpx.Client) -> None:
    made = []
    try:
        for _ in range(3):
            response = tenant.post("/v1/sandboxes", json={"backend": "wasm"})
            assert response.status_code == 201, response.text
            made.append(response.json()["id"])
        error = refused(
            tenant.post("/v1/sandboxes", json={"backend": "wasm"}), 429, "sandbox_limit"
        )
        assert "3 live sandboxes" in error["message"]
    finally:
        for sandbox in made:
            tenant.delete(f"/v1/sandboxes/{sandbox}")


@pytest.mark.parametrize("backend", ["bwrap", "gvisor"])
def test_no_sandbox_makes_a_nested_user_namespace(tenant: httpx.Client, backend: str) -> None:
    sandbox = tenant.post("/v1/sandboxes", json={"backend": backend}).json()
    try:
        result = tenant.post(
            f"/v1/sandboxes/{sandbox['id']}/exec", json={"code": NESTED_NAMESPACES}
        ).json()
        assert (result["status"], result["value"]) == ("ok", "[]"), result
    finally:
        tenant.delete(f"/v1/sandboxes/{sandbox['id']}")


def test_cpu_and_background_processes_are_bounded(tenant: httpx.Client) -> None:
    template = {"backend": "bwrap", "limits": {"cpuSeconds": 1, "wallSeconds": 30}}
    tenant.post("/v1/apply", json=doc("SandboxTemplate", "tight", template)).raise_for_status()
    sandbox = tenant.post("/v1/sandboxes", json={"template": "tight"}).json()["id"]
    try:
        ignore = (
            "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass"
        )
        started = time.monotonic()
        result = tenant.post(f"/v1/sandboxes/{sandbox}/exec", json={"code": ignore}).json()
        assert result["status"] == "timeout" and "CPU" in result["error"], result
        assert time.monotonic() - started < 20
    finally:
        tenant.delete(f"/v1/sandboxes/{sandbox}")
    sandbox = tenant.post("/v1/sandboxes", json={"backend": "bwrap"}).json()["id"]
    try:
        count = "python3 -c \"import os; print(sum(p.isdigit() for p in os.listdir('/proc')))\""
        idle = tenant.post(f"/v1/sandboxes/{sandbox}/exec", json={"command": count}).json()
        tenant.post(f"/v1/sandboxes/{sandbox}/exec", json={"command": "sleep 300 &"})
        after = tenant.post(f"/v1/sandboxes/{sandbox}/exec", json={"command": count}).json()
        assert after["stdout"] == idle["stdout"], (idle, after)  # the sleep is gone
    finally:
        tenant.delete(f"/v1/sandboxes/{sandbox}")

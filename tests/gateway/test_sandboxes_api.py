"""Sandboxes over REST: create, exec (also streamed), files, isolation, delete."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import ServerThread, doc


@pytest.fixture(params=["bwrap", "gvisor", "wasm"])
def sandbox(request: pytest.FixtureRequest, api: httpx.Client) -> str:
    created = api.post("/v1/sandboxes", json={"backend": request.param})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["backend"], body["alive"]) == (request.param, True)
    return str(body["id"])


def test_exec_keeps_state_and_files_move_both_ways(api: httpx.Client, sandbox: str) -> None:
    assert (
        api.post(f"/v1/sandboxes/{sandbox}/exec", json={"code": "n = 6"}).json()["status"] == "ok"
    )
    result = api.post(f"/v1/sandboxes/{sandbox}/exec", json={"code": "n * 7"}).json()
    assert (result["status"], result["value"]) == ("ok", "42")

    put = api.put(f"/v1/sandboxes/{sandbox}/files/in/data.txt", content=b"3 4 5")
    assert put.json() == {"path": "in/data.txt", "size": 5}
    code = "open('out.txt','w').write(str(sum(map(int, open('in/data.txt').read().split()))))"
    assert api.post(f"/v1/sandboxes/{sandbox}/exec", json={"code": code}).json()["files"] == [
        "out.txt"
    ]
    assert api.get(f"/v1/sandboxes/{sandbox}/files/out.txt").content == b"12"
    listed = api.get(f"/v1/sandboxes/{sandbox}/files").json()["items"]
    assert {f["path"] for f in listed} == {"in/data.txt", "out.txt"}


def test_exec_streams_over_sse(api: httpx.Client, sandbox: str) -> None:
    with api.stream(
        "POST", f"/v1/sandboxes/{sandbox}/exec", json={"code": "print('hello')", "stream": True}
    ) as r:
        lines = [line for line in r.iter_lines() if line.startswith(("event:", "data:"))]
    events = [line.split(": ", 1)[1] for line in lines if line.startswith("event:")]
    assert events == ["started", "stdout", "result"]
    assert json.loads(lines[-1].split(": ", 1)[1])["stdout"] == "hello\n"


def test_paths_that_leave_the_workspace_are_refused(api: httpx.Client, sandbox: str) -> None:
    for path in ("..%2Fescape.txt", "%2Fetc%2Fpasswd", "a/../../x"):
        response = api.put(f"/v1/sandboxes/{sandbox}/files/{path}", content=b"x")
        assert response.status_code in (404, 422), (path, response.text)
        if response.status_code == 422:
            assert response.json()["error"]["code"] == "sandbox_file_error"


def test_another_namespace_cannot_reach_a_sandbox(
    server: ServerThread, api: httpx.Client, sandbox: str
) -> None:
    other_key = api.post("/v1/keys", json={"namespace": "other"}).json()["key"]
    with server.client(other_key) as other:
        assert other.get("/v1/sandboxes").json()["items"] == []
        for response in (
            other.get(f"/v1/sandboxes/{sandbox}"),
            other.post(f"/v1/sandboxes/{sandbox}/exec", json={"code": "1"}),
            other.get(f"/v1/sandboxes/{sandbox}/files"),
            other.delete(f"/v1/sandboxes/{sandbox}"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "sandbox_not_found"
    assert api.get(f"/v1/sandboxes/{sandbox}").json()["alive"] is True


def test_delete_ends_the_sandbox(api: httpx.Client, sandbox: str) -> None:
    assert api.delete(f"/v1/sandboxes/{sandbox}").json()["deleted"] is True
    assert api.get(f"/v1/sandboxes/{sandbox}").status_code == 404


def test_templates_backends_and_bad_requests(api: httpx.Client) -> None:
    api.post(
        "/v1/apply",
        json=doc("SandboxTemplate", "small", {"backend": "wasm", "limits": {"memoryMb": 64}}),
    )
    created = api.post("/v1/sandboxes", json={"template": "small"}).json()
    assert (created["template"], created["backend"], created["limits"]["memoryMb"]) == (
        "small",
        "wasm",
        64,
    )

    backends = {b["backend"]: b for b in api.get("/v1/sandboxes/backends").json()["items"]}
    assert all(backends[name]["available"] for name in ("bwrap", "gvisor", "wasm", "monty"))
    assert all(backends[name]["detail"] for name in backends)

    for body, code in (
        ({"backend": "vmware"}, "invalid_request"),
        ({"template": "ghost"}, "resource_not_found"),
        ({"template": "small", "backend": "wasm"}, "invalid_request"),
    ):
        response = api.post("/v1/sandboxes", json=body)
        assert 400 <= response.status_code < 500 and response.json()["error"]["code"] == code, body
    sid = created["id"]
    bad = api.post(f"/v1/sandboxes/{sid}/exec", json={"code": "1", "command": "ls"})
    assert bad.status_code == 422


def tar(*members: tuple[str, bytes | None, str]) -> bytes:
    """A tar archive of (name, content, kind) with kind 'file', 'symlink' or 'hardlink'."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content, kind in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(content or b"")
                archive.addfile(info, io.BytesIO(content or b""))
            else:
                info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
                info.linkname = "/etc/passwd"
                archive.addfile(info)
    return buffer.getvalue()


def test_an_archive_is_extracted_into_the_workspace(api: httpx.Client, sandbox: str) -> None:
    data = tar(("src/main.py", b"print('hi')", "file"), ("README", b"read me", "file"))
    listed = api.post(f"/v1/sandboxes/{sandbox}/archive?into=project", content=data).json()["items"]
    assert {f["path"] for f in listed} == {"project/src/main.py", "project/README"}
    assert api.get(f"/v1/sandboxes/{sandbox}/files/project/README").content == b"read me"


@pytest.mark.parametrize(
    "member",
    [
        ("../escape.txt", b"x", "file"),
        ("/etc/cron.d/evil", b"x", "file"),
        ("a/../../escape.txt", b"x", "file"),
        ("link", None, "symlink"),
        ("hard", None, "hardlink"),
    ],
)
def test_a_crafted_archive_is_refused_whole(
    api: httpx.Client, sandbox: str, member: tuple[str, bytes | None, str]
) -> None:
    data = tar(("good.txt", b"fine", "file"), member)
    response = api.post(f"/v1/sandboxes/{sandbox}/archive", content=data)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "sandbox_file_error" and error["details"]["status"] == "denied"
    assert api.get(f"/v1/sandboxes/{sandbox}/files").json()["items"] == []  # nothing extracted


def test_a_template_with_an_allowlist_reaches_only_its_hosts(
    server: ServerThread, api: httpx.Client
) -> None:
    """The gateway itself stands in for an outside host: it listens on the host's
    loopback, which no sandbox can reach except through its egress proxy."""
    network = {"mode": "allowlist", "allowHosts": [f"127.0.0.1:{server.port}"]}
    applied = api.post("/v1/apply", json=doc("SandboxTemplate", "online", {"network": network}))
    assert applied.status_code == 200, applied.text
    sid = api.post("/v1/sandboxes", json={"template": "online"}).json()["id"]
    fetch = "import urllib.request\nurllib.request.urlopen('{url}/healthz').read()"
    ok = api.post(f"/v1/sandboxes/{sid}/exec", json={"code": fetch.format(url=server.url)})
    assert ok.json()["status"] == "ok" and "ok" in ok.json()["value"]
    other = server.url.replace("127.0.0.1", "localhost")
    denied = api.post(f"/v1/sandboxes/{sid}/exec", json={"code": fetch.format(url=other)})
    assert denied.json()["status"] == "denied", denied.json()


def test_a_network_the_backend_cannot_give_is_refused_at_apply(api: httpx.Client) -> None:
    network = {"mode": "allowlist", "allowHosts": ["pypi.org"]}
    response = api.post(
        "/v1/apply", json=doc("SandboxTemplate", "online", {"backend": "wasm", "network": network})
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_spec" and "no network" in error["message"]


@pytest.mark.parametrize("backend", ["bwrap", "gvisor", "wasm", "monty"])
def test_exec_output_streams_while_the_code_still_runs(api: httpx.Client, backend: str) -> None:
    sid = api.post("/v1/sandboxes", json={"backend": backend}).json()["id"]
    code = "import time\nprint('first')\ntime.sleep(1.5)\nprint('second')"
    events: list[tuple[str, str]] = []
    with api.stream("POST", f"/v1/sandboxes/{sid}/exec", json={"code": code, "stream": True}) as r:
        name = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(": ", 1)[1]
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(": ", 1)[1]).get("text", "")))
    # Two chunks, not one: 'first' left the sandbox before 'second' was printed.
    assert events[1:3] == [("stdout", "first\n"), ("stdout", "second\n")]
    assert events[-1][0] == "result"


def test_applying_a_template_with_a_warm_pool_starts_it(
    server: ServerThread, api: httpx.Client
) -> None:
    from hangar.sandbox.manager import SandboxManager
    from hangar.spec.sandbox import SandboxTemplateSpec
    from tests.helpers import wait_until

    template = {"backend": "bwrap", "warmPool": 2}
    api.post("/v1/apply", json=doc("SandboxTemplate", "warm", template))
    manager = server.runtime.sandboxes
    policy = server.runtime.admission.grants("default").policy
    key = SandboxManager.pool_key(SandboxTemplateSpec.model_validate(template), policy)
    pool = wait_until(lambda: len(manager.pools.get(key, ())) == 2 and manager.pools[key])
    ready = {sandbox.id for sandbox in pool}
    created = api.post("/v1/sandboxes", json={"template": "warm"}).json()
    assert created["id"] in ready

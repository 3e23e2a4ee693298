"""A client's mistake never yields a 500: arbitrary JSON thrown at every endpoint that
takes a body gets a 4xx with a JSON error, or a success."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import ServerThread, agent, doc, scripted_model

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "apiVersion",
                    "kind",
                    "metadata",
                    "spec",
                    "name",
                    "model",
                    "messages",
                    "role",
                    "content",
                    "tools",
                    "input",
                    "stream",
                    "function",
                    "query",
                    "text",
                    "mode",
                    "x",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)

ENDPOINTS = [
    "/v1/apply",
    "/v1/agents/fuzz/runs",
    "/v1/chat/completions",
    "/v1/keys",
    "/v1/knowledgebases/fuzz/search",
    "/v1/knowledgebases/fuzz/ingestions",
    "/v1/users/fuzz/memories",
]


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = ServerThread(Path(tmp_path_factory.mktemp("fuzz")) / "home").start()
    with server.client() as client:
        client.post(
            "/v1/apply",
            json=[
                scripted_model("fuzz", {"text": "ok"}),
                agent("fuzz", "fuzz"),
                doc("KnowledgeBase", "fuzz", {}),
            ],
        )
        yield client
    server.stop()


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and error["message"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(ENDPOINTS), body=json_values)
def test_arbitrary_json_bodies_never_cause_a_server_error(
    fuzz_api: httpx.Client, path: str, body: Any
) -> None:
    if isinstance(body, dict):
        body.pop("stream", None)  # a streamed 200 would hold the connection open
        if path.endswith("/runs"):
            body["wait"] = False
    check(fuzz_api.post(path, json=body))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(ENDPOINTS), raw=st.binary(max_size=200))
def test_bytes_that_are_not_json_never_cause_a_server_error(
    fuzz_api: httpx.Client, path: str, raw: bytes
) -> None:
    check(fuzz_api.post(path, content=raw, headers={"content-type": "application/json"}))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(kind=st.text(max_size=15), name=st.text(max_size=15))
def test_odd_paths_never_cause_a_server_error(fuzz_api: httpx.Client, kind: str, name: str) -> None:
    for path in (
        f"/v1/resources/{kind}/{name}",
        f"/v1/runs/{name}",
        f"/v1/schemas/{kind}",
        f"/v1/users/{name}/memories",
        f"/v1/knowledgebases/{name}/sources",
    ):
        with contextlib.suppress(httpx.InvalidURL):  # not a request a client can send
            check(fuzz_api.get(httpx.URL(path)))

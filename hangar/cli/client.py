"""The CLI's HTTP client: finds the server like kubectl finds its cluster, and turns
error bodies back into ``HangarError``s with their codes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from hangar.config import Settings
from hangar.errors import ConfigurationError, RemoteError


def client_config(url: str | None, api_key: str | None) -> tuple[str, str]:
    """URL and key from flags, then ``HANGAR_URL``/``HANGAR_API_KEY``, then the
    ``client.json`` that ``hangar up`` writes under ``HANGAR_HOME``."""
    url = url or os.environ.get("HANGAR_URL")
    api_key = api_key or os.environ.get("HANGAR_API_KEY")
    if not (url and api_key):
        path = Path(Settings().home) / "client.json"
        if path.exists():
            saved = json.loads(path.read_text())
            url = url or saved.get("url")
            api_key = api_key or saved.get("api_key")
    if not url or not api_key:
        raise ConfigurationError(
            "no Hangar server configured",
            hint="start one with `hangar up` in this folder, or set HANGAR_URL and HANGAR_API_KEY",
        )
    return url.rstrip("/"), api_key


class Client:
    def __init__(
        self, url: str, api_key: str, timeout: float = 660, namespace: str | None = None
    ) -> None:
        self.url = url
        headers = {"Authorization": f"Bearer {api_key}"}
        if namespace:
            headers["X-Hangar-Namespace"] = namespace
        self.http = httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(timeout, connect=5)
        )

    def _check(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        try:
            body = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            body = {"code": f"http_{response.status_code}", "message": response.text[:500]}
        raise RemoteError(
            str(body.get("code")),
            str(body.get("message")),
            response.status_code,
            dict(body.get("details") or {}),
        )

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ConfigurationError(
                f"cannot reach the Hangar server at {self.url}",
                hint="is `hangar up` running? check HANGAR_URL",
            ) from None
        self._check(response)
        return response

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def request_text(self, method: str, path: str, **kwargs: Any) -> str:
        return self._send(method, path, **kwargs).text

    def sse(self, method: str, path: str, **kwargs: Any) -> Iterator[tuple[str | None, str]]:
        """Yield ``(event, data)`` for each Server-Sent Event of a response."""
        try:
            with self.http.stream(method, path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    self._check(response)
                event: str | None = None
                data: list[str] = []
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            yield event, "\n".join(data)
                        event, data = None, []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].lstrip())
        except httpx.ConnectError:
            raise ConfigurationError(
                f"cannot reach the Hangar server at {self.url}", hint="is `hangar up` running?"
            ) from None

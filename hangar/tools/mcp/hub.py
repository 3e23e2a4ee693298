"""The MCP hub: every MCPServer of every namespace, connected once and shared by the
runs that use it. Credentials are opened here, at connect time, and go only to
the server's process or requests; a new generation of a server's spec replaces
its connection, and a deleted server's connection goes with it.

What a namespace may run is decided here, at every connect, by its grants: a
``catalog`` entry the administrator fixed runs on the host; a ``stdio`` command the
namespace wrote runs in a sandbox of its template; an ``http`` URL is reached by the
namespace's address policy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from fnmatch import fnmatchcase
from typing import Any

from hangar.admission import Admission
from hangar.errors import AdmissionDeniedError, ResourceNotFoundError
from hangar.models.messages import ToolDefinition
from hangar.sandbox.manager import template_spec
from hangar.sandbox.programs import sandboxed_program
from hangar.spec.mcp import MCPServer, MCPServerSpec
from hangar.spec.secret import SecretKeyRef
from hangar.store.base import ResourceStore
from hangar.store.records import StoredResource
from hangar.store.secrets import SecretResolver
from hangar.tools.base import ToolContext
from hangar.tools.mcp.upstream import Launch, Upstream, UpstreamTool

SEPARATOR = "__"
MAX_NAME = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def qualified_name(server: str, tool: str) -> str:
    """``server__tool``, in the characters and length chat APIs accept for a function
    name; a long name keeps a hash of the full one so two never collide."""
    name = _UNSAFE.sub("_", f"{server}{SEPARATOR}{tool}")
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9]}_{digest}"
    return name


class MCPTool:
    """One tool of one MCP server, as the agent loop calls it."""

    def __init__(self, upstream: Upstream, tool: UpstreamTool) -> None:
        self.upstream = upstream
        self.tool = tool
        self._definition = ToolDefinition(
            name=qualified_name(upstream.name, tool.name),
            description=tool.description,
            parameters=tool.input_schema or {"type": "object", "properties": {}},
        )

    @property
    def definition(self) -> ToolDefinition:
        return self._definition

    @property
    def idempotent(self) -> bool:
        return self.tool.idempotent

    async def call(self, arguments: dict[str, Any], context: ToolContext) -> str:
        return await self.upstream.call(self.tool.name, arguments)


class MCPHub:
    def __init__(
        self,
        store: ResourceStore,
        secrets: SecretResolver,
        admission: Admission | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.admission = admission or Admission(None)
        self._upstreams: dict[tuple[str, str], Upstream] = {}
        self._retired: set[asyncio.Task[None]] = set()

    async def upstream(self, namespace: str, name: str) -> Upstream:
        stored = await self.store.get_resource(namespace, MCPServer.KIND, name)
        if stored is None:
            await self.forget(namespace, name)  # deleted, perhaps through another process
            raise ResourceNotFoundError(
                f"MCPServer {name!r} not found in namespace {namespace!r}",
                hint="apply it with `hangar apply -f`, or remove it from the agent's tools",
                details={"kind": MCPServer.KIND, "name": name},
            )
        return self.upstream_of(stored)

    def upstream_of(self, stored: StoredResource) -> Upstream:
        """The connection for a stored MCPServer, replaced when its generation moved."""
        namespace, name = stored.namespace, stored.name
        key = (namespace, name)
        current = self._upstreams.get(key)
        if current is None or current.generation != stored.generation:
            spec = MCPServerSpec.model_validate(stored.spec)

            async def launch(spec: MCPServerSpec = spec) -> Launch:
                return await self._launch(namespace, name, spec)

            self._upstreams[key] = Upstream(namespace, name, stored.generation, spec, launch)
            if current is not None:
                self._retire(current)
        return self._upstreams[key]

    def _retire(self, upstream: Upstream) -> None:
        task = asyncio.create_task(upstream.close())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    async def forget(self, namespace: str, name: str) -> None:
        """Close a server's connection (it was deleted): its process ends here."""
        upstream = self._upstreams.pop((namespace, name), None)
        if upstream is not None:
            await upstream.close()

    async def _launch(self, namespace: str, name: str, spec: MCPServerSpec) -> Launch:
        secrets: list[str] = []

        async def opened(values: dict[str, str | SecretKeyRef], where: str) -> dict[str, str]:
            out = {}
            for key, value in values.items():
                out[key] = await self.secrets.resolve(namespace, value, f"{where}.{key}")
                if isinstance(value, SecretKeyRef):
                    secrets.append(out[key])
            return out

        where = f"MCPServer {name!r} spec"
        grants = self.admission.grants(namespace)
        if spec.catalog is not None:
            entry = grants.catalog_entry(spec.catalog.name, f"{where}.catalog.name")
            unknown = sorted(set(spec.catalog.env) - set(entry.tenant_env))
            if unknown:
                raise AdmissionDeniedError(
                    f"{where}.catalog.env: the catalog entry {entry.name!r} lets a namespace "
                    f"set only {', '.join(entry.tenant_env) or 'no variable'}, not "
                    f"{', '.join(unknown)}"
                )
            env = await opened(dict(spec.catalog.env), f"{where}.catalog.env")
            return Launch(
                command=[entry.command, *entry.args],
                env={**entry.env, **env},
                cwd=entry.cwd,
                secrets=tuple(secrets),
                on_host=True,
            )
        if spec.stdio is not None:
            env = await opened(dict(spec.stdio.env), f"{where}.stdio.env")
            return await self._sandboxed(namespace, name, spec, env, tuple(secrets))
        assert spec.http is not None
        headers = await opened(dict(spec.http.headers), f"{where}.http.headers")
        client_secret = None
        if spec.http.oauth is not None:
            client_secret = await self.secrets.resolve(
                namespace, spec.http.oauth.client_secret, f"{where}.http.oauth.clientSecret"
            )
            secrets.append(client_secret)
        return Launch(
            headers=headers,
            oauth_client_secret=client_secret,
            policy=grants.policy,
            secrets=tuple(secrets),
        )

    async def _sandboxed(
        self,
        namespace: str,
        name: str,
        spec: MCPServerSpec,
        env: dict[str, str],
        secrets: tuple[str, ...],
    ) -> Launch:
        """A namespace's own stdio server, started in a sandbox of its template."""
        stdio = spec.stdio
        assert stdio is not None
        template = await template_spec(self.store, namespace, stdio.sandbox)
        if stdio.sandbox is None:
            template = template.model_copy(update={"backend": "bwrap"})
        grants = self.admission.grants(namespace)
        problems = grants.limits_problems(template)
        if problems:
            raise AdmissionDeniedError(f"SandboxTemplate {stdio.sandbox!r}: {problems[0]}")
        program = await sandboxed_program(
            template,
            stdio.command,
            list(stdio.args),
            env,
            stdio.cwd,
            grants.policy,
            f"mcp {namespace}/{name}",
        )
        return Launch(command=program.argv, secrets=secrets, close=program.close)

    async def tools(
        self, namespace: str, server: str | StoredResource, include: list[str]
    ) -> list[MCPTool]:
        """The server's tools (after its own filter and the agent's ``include``); pass
        the stored resource when at hand, to spare reading it again."""
        if isinstance(server, str):
            upstream = await self.upstream(namespace, server)
        else:
            upstream = self.upstream_of(server)
        await upstream.ensure()
        return [
            MCPTool(upstream, tool)
            for tool in upstream.tools.values()
            if not include or any(fnmatchcase(tool.name, p) for p in include)
        ]

    async def probe(self, namespace: str, names: list[str], timeout: float = 15) -> None:
        """Connect the named servers that are not yet, so their health is known."""

        async def one(name: str) -> None:
            with contextlib.suppress(Exception):
                upstream = await self.upstream(namespace, name)
                async with asyncio.timeout(timeout):
                    await upstream.ensure()

        await asyncio.gather(*(one(name) for name in names))

    def cached_schema(self, namespace: str, qualified: str) -> dict[str, Any] | None:
        """A connected server's tool schema by its qualified name, from memory only."""
        server = qualified.split(SEPARATOR, 1)[0]
        upstream = self._upstreams.get((namespace, server))
        if upstream is None:
            return None
        for tool in upstream.tools.values():
            if qualified_name(server, tool.name) == qualified:
                return tool.input_schema
        return None

    def statuses(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every known server's status, by (namespace, name): for metrics."""
        return {key: upstream.status() for key, upstream in self._upstreams.items()}

    def status(self, namespace: str, name: str) -> dict[str, Any] | None:
        upstream = self._upstreams.get((namespace, name))
        return None if upstream is None else upstream.status()

    async def close(self) -> None:
        upstreams, self._upstreams = list(self._upstreams.values()), {}
        await asyncio.gather(*(u.close() for u in upstreams), *self._retired)

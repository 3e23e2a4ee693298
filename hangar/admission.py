"""What the administrator grants namespaces: the host-level power no tenant takes by
declaring it.

A namespace key is a hostile tenant until proven otherwise, so anything a resource
could do on the host itself is off unless the administrator's admission file grants
it to that namespace:

- ``mcpServers``: the catalog of MCP servers that run on the host over stdio. A
  namespace references an entry by name (``MCPServer.spec.catalog``); the entry fixes
  the command, its arguments and its environment, and names the variables a tenant
  may add (a token from its own Secret). Any other stdio server runs in a sandbox.
- ``environment``: server environment variables a namespace's Models and embedders
  may name (``apiKeyEnv``, ``baseUrlEnv``).
- ``folders``: roots a namespace's knowledge bases (and local Models' files) may
  read. Never the server's own state folder, whatever the grant says.
- ``egress``: internal address ranges a namespace's connections may reach (by
  default only public addresses; see ``hangar.egress``).
- ``sandboxes``: ceilings on every sandbox limit, warm pool and live sandbox count.

The file is YAML (``HANGAR_ADMISSION_FILE``, default ``$HANGAR_HOME/admission.yaml``)
and is read again when it changes: a grant added or withdrawn takes effect within a
second on every process, at apply time and at use (a resource stored under a grant
since withdrawn stops working, with an error that says so).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from hangar.egress import PUBLIC_ONLY, AddressPolicy, IPNetwork
from hangar.errors import (
    AdmissionDeniedError,
    ConfigurationError,
    HangarError,
    shown,
)
from hangar.spec.agent import Agent
from hangar.spec.base import Resource, SpecModel
from hangar.spec.hosts import split_pattern
from hangar.spec.knowledge import KnowledgeBase
from hangar.spec.mcp import MCPServer
from hangar.spec.model import Model
from hangar.spec.sandbox import SandboxLimits, SandboxTemplate, SandboxTemplateSpec

log = logging.getLogger("hangar.admission")

ADMISSION_FILE = "admission.yaml"
RELOAD_SECONDS = 1.0


class Grant(SpecModel):
    namespaces: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Namespaces the grant applies to; glob patterns ('team-*').",
    )

    def covers(self, namespace: str) -> bool:
        return any(fnmatchcase(namespace, pattern) for pattern in self.namespaces)


class CatalogServer(Grant):
    """A host MCP server over stdio, as the administrator fixed it."""

    name: str
    command: str = Field(description="Executable, on the server's PATH or absolute.")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="Fixed environment.")
    tenant_env: list[str] = Field(
        default_factory=list,
        description="Variables a namespace may set (from its Secrets), e.g. GITHUB_TOKEN.",
    )
    cwd: str | None = None


class EnvironmentGrant(Grant):
    names: list[str] = Field(description="Server environment variables a namespace may name.")


class FolderGrant(Grant):
    path: str = Field(description="A folder on the server; everything under it may be read.")


class RangeGrant(Grant):
    cidr: str = Field(description="An internal range, e.g. '10.20.0.0/16' or 'fd00::/8'.")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an address range: {exc}") from None
        return value


class SandboxCeilings(Grant):
    """The most a namespace's sandboxes may ask for. The first entry of ``sandboxes``
    naming a namespace applies to it; a namespace none names gets these defaults."""

    cpu_seconds: float = Field(default=300, gt=0)
    wall_seconds: float = Field(default=3600, gt=0)
    memory_mb: int = Field(default=4096, ge=16)
    processes: int = Field(default=256, ge=1)
    workspace_mb: int = Field(default=4096, ge=1)
    output_bytes: int = Field(default=10_000_000, ge=1024)
    cpus: float = Field(default=2, gt=0, description="Cores a sandbox may use at once.")
    idle_timeout_seconds: float = Field(default=86_400, gt=0)
    warm_pool: int = Field(default=4, ge=0, description="Warm sandboxes per template.")
    warm_pool_total: int = Field(
        default=8, ge=0, description="Warm sandboxes over all of a namespace's templates."
    )
    sandboxes: int = Field(
        default=32, ge=0, description="Live sandboxes of the namespace in one process."
    )


class AdmissionConfig(SpecModel):
    """The admission file."""

    mcp_servers: list[CatalogServer] = Field(default_factory=list)
    environment: list[EnvironmentGrant] = Field(default_factory=list)
    folders: list[FolderGrant] = Field(default_factory=list)
    egress: list[RangeGrant] = Field(default_factory=list)
    sandboxes: list[SandboxCeilings] = Field(default_factory=list)


DEFAULT_CEILINGS = SandboxCeilings()


@dataclass(frozen=True)
class Grants:
    """What one namespace was granted, worked out from the admission file."""

    namespace: str
    catalog: dict[str, CatalogServer] = field(default_factory=dict)
    environment: frozenset[str] = frozenset()
    folders: tuple[Path, ...] = ()
    policy: AddressPolicy = PUBLIC_ONLY
    ceilings: SandboxCeilings = DEFAULT_CEILINGS
    home: Path | None = None
    """The server's state folder: never readable, whatever a folder grant says."""

    def env(self, name: str, where: str) -> str | None:
        """The value of a server variable a resource names, if granted (None if unset)."""
        if name not in self.environment:
            raise AdmissionDeniedError(
                f"{where} names the server variable {shown(name)}, which namespace "
                f"{self.namespace!r} may not read",
                hint="take the value from a Secret of the namespace instead (apiKey: {secret, "
                "key}), or ask the administrator to grant the variable (admission: "
                "environment)",
            )
        return os.environ.get(name) or None

    def readable(self, path: str | Path, where: str) -> Path:
        """``path`` resolved (symbolic links followed), if it lies under a granted folder
        and outside the server's state; an ``AdmissionDeniedError`` if not."""
        resolved = Path(path).expanduser().resolve()
        if self.home is not None and _under(resolved, self.home.resolve()):
            raise AdmissionDeniedError(
                f"{where}: {shown(str(path), 200)} is inside Hangar's own state folder, "
                "which no namespace may read"
            )
        if not any(_under(resolved, root) for root in self.folders):
            raise AdmissionDeniedError(
                f"{where}: {shown(str(path), 200)} is not under a folder namespace "
                f"{self.namespace!r} was granted",
                hint="upload the files instead, or ask the administrator to grant the folder "
                "(admission: folders)",
                details={"granted": [str(root) for root in self.folders]},
            )
        return resolved

    def catalog_entry(self, name: str, where: str) -> CatalogServer:
        entry = self.catalog.get(name)
        if entry is None:
            raise AdmissionDeniedError(
                f"{where}: {shown(name)} is not in the administrator's catalog of MCP servers "
                f"for namespace {self.namespace!r}",
                hint=f"available: {', '.join(sorted(self.catalog)) or 'none'}; run your own "
                "server with 'stdio' (it runs in a sandbox) or 'http'",
            )
        return entry

    def limits_problems(self, spec: SandboxTemplateSpec) -> list[str]:
        """What of a template exceeds this namespace's ceilings."""
        ceilings = self.ceilings
        problems = []
        limits: SandboxLimits = spec.limits
        for name in type(limits).model_fields:
            asked, most = getattr(limits, name), getattr(ceilings, name, None)
            if most is not None and asked > most:
                problems.append(
                    f"spec.limits.{_camel(name)} is {asked}; the most allowed is {most}"
                )
        if spec.warm_pool > ceilings.warm_pool:
            problems.append(
                f"spec.warmPool is {spec.warm_pool}; the most allowed is {ceilings.warm_pool}"
            )
        if spec.idle_timeout_seconds > ceilings.idle_timeout_seconds:
            problems.append(
                f"spec.idleTimeoutSeconds is {spec.idle_timeout_seconds:g}; the most allowed is "
                f"{ceilings.idle_timeout_seconds:g}"
            )
        return problems


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def grants_for(config: AdmissionConfig, namespace: str, home: Path | None) -> Grants:
    ranges: list[IPNetwork] = [
        ipaddress.ip_network(grant.cidr, strict=False)
        for grant in config.egress
        if grant.covers(namespace)
    ]
    ceilings = next((c for c in config.sandboxes if c.covers(namespace)), DEFAULT_CEILINGS)
    return Grants(
        namespace=namespace,
        catalog={e.name: e for e in config.mcp_servers if e.covers(namespace)},
        environment=frozenset(
            n for g in config.environment if g.covers(namespace) for n in g.names
        ),
        folders=tuple(
            Path(g.path).expanduser().resolve() for g in config.folders if g.covers(namespace)
        ),
        policy=AddressPolicy(tuple(ranges)) if ranges else PUBLIC_ONLY,
        ceilings=ceilings,
        home=home,
    )


class Admission:
    """The administrator's grants, read from the admission file (again when it
    changes), per namespace."""

    def __init__(
        self, path: Path | None, home: Path | None = None, config: AdmissionConfig | None = None
    ) -> None:
        self.path = path
        self.home = home
        self._config = config or AdmissionConfig()
        self._stamp: tuple[int, int] | None = None
        self._checked = float("-inf")
        self._grants: dict[str, Grants] = {}
        if config is None:
            self._reload()

    @classmethod
    def fixed(cls, config: AdmissionConfig | dict[str, Any], home: Path | None = None) -> Admission:
        """Grants that never change (tests, embedding)."""
        if isinstance(config, dict):
            config = AdmissionConfig.model_validate(config)
        return cls(None, home, config)

    @property
    def config(self) -> AdmissionConfig:
        self._maybe_reload()
        return self._config

    def grants(self, namespace: str) -> Grants:
        self._maybe_reload()
        found = self._grants.get(namespace)
        if found is None:
            found = self._grants[namespace] = grants_for(self._config, namespace, self.home)
        return found

    def _maybe_reload(self) -> None:
        if self.path is None or time.monotonic() - self._checked < RELOAD_SECONDS:
            return
        self._reload()

    def _reload(self) -> None:
        self._checked = time.monotonic()
        if self.path is None:
            return
        try:
            info = self.path.stat()
        except FileNotFoundError:
            stamp = None
        else:
            stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        self._config = load_config(self.path) if stamp is not None else AdmissionConfig()
        self._stamp = stamp
        self._grants = {}
        if stamp is not None:
            log.info("admission: read %s", self.path)

    # --- apply time ------------------------------------------------------------------

    def check(self, namespace: str, resource: Resource) -> None:
        """Refuse a resource that asks for what its namespace was not granted; every
        problem is listed."""
        checker = CHECKS.get(resource.kind)
        if checker is None:
            return
        grants = self.grants(namespace)
        problems: list[str] = []
        checker(grants, resource, problems)
        if problems:
            where = f"{resource.kind} {resource.name!r}"
            raise AdmissionDeniedError(
                f"{where}: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                hint="the administrator grants host-level power in the admission file; "
                "nothing was applied",
                details={"problems": [{"source": where, "message": p} for p in problems[:50]]},
            )


def load_config(path: Path) -> AdmissionConfig:
    """The admission file, or a ``ConfigurationError`` that says what is wrong in it."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
        return AdmissionConfig.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigurationError(
            f"the admission file {path} cannot be used: {exc}",
            hint="fix it; until then no grant holds",
        ) from None


# --- what each kind may ask for ----------------------------------------------------------

Checker = Callable[[Grants, Any, list[str]], None]


def _refused(problems: list[str], check: Callable[..., Any], *args: Any) -> None:
    """Note the refusal ``check(*args)`` raises, if it does."""
    try:
        check(*args)
    except HangarError as exc:
        problems.append(exc.message)


def literal_address_problem(url: str | None, where: str, grants: Grants) -> str | None:
    """A URL whose host is written as an internal address (or 'localhost') is refused
    when applied; names are checked again at every connection."""
    if not url:
        return None
    from urllib.parse import urlsplit

    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return f"{where} is not a URL"
    return _host_problem(host, where, grants)


def _host_problem(host: str, where: str, grants: Grants) -> str | None:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return f"{where} names {host!r}, the server itself, which namespaces may not reach"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    why = grants.policy.refusal(address)
    return (
        None if why is None else f"{where} names {address}, {why}, which namespaces may not reach"
    )


def _check_endpoint(
    grants: Grants,
    where: str,
    problems: list[str],
    base_url: str | None,
    api_key_env: str | None,
    base_url_env: str | None = None,
) -> None:
    """A model's or an embedder's endpoint: granted variables only, no internal URL."""
    for name, key in ((api_key_env, "apiKeyEnv"), (base_url_env, "baseUrlEnv")):
        if name is not None:
            _refused(problems, grants.env, name, f"{where}.{key}")
    problem = literal_address_problem(base_url, f"{where}.baseUrl", grants)
    if problem:
        problems.append(problem)


def _check_model(grants: Grants, model: Model, problems: list[str]) -> None:
    spec = model.spec
    _check_endpoint(grants, "spec", problems, spec.base_url, spec.api_key_env, spec.base_url_env)
    if spec.path is not None:
        _refused(problems, grants.readable, spec.path, "spec.path")


def _check_knowledge(grants: Grants, kb: KnowledgeBase, problems: list[str]) -> None:
    embedder = kb.spec.embedder
    _check_endpoint(grants, "spec.embedder", problems, embedder.base_url, embedder.api_key_env)
    for i, source in enumerate(kb.spec.sources):
        if source.folder is not None:
            _refused(problems, grants.readable, source.folder, f"spec.sources[{i}]")
        problem = literal_address_problem(source.url, f"spec.sources[{i}].url", grants)
        if problem:
            problems.append(problem)
    _check_hosts(grants, kb.spec.egress.allow_hosts, "spec.egress.allowHosts", problems)


def _check_hosts(grants: Grants, patterns: list[str], where: str, problems: list[str]) -> None:
    for i, pattern in enumerate(patterns):
        problem = _host_problem(split_pattern(pattern)[0], f"{where}[{i}]", grants)
        if problem:
            problems.append(problem)


def _check_mcp(grants: Grants, server: MCPServer, problems: list[str]) -> None:
    spec = server.spec
    if spec.catalog is not None:
        catalog = spec.catalog
        try:
            entry = grants.catalog_entry(catalog.name, "spec.catalog.name")
        except HangarError as exc:
            problems.append(exc.message)
            return
        for name in catalog.env:
            if name not in entry.tenant_env:
                problems.append(
                    f"spec.catalog.env.{name}: the catalog entry {entry.name!r} lets a namespace "
                    f"set only {', '.join(entry.tenant_env) or 'no variable'}"
                )
    if spec.http is not None:
        problem = literal_address_problem(spec.http.url, "spec.http.url", grants)
        if problem:
            problems.append(problem)
        if spec.http.oauth is not None:
            problem = literal_address_problem(
                spec.http.oauth.issuer, "spec.http.oauth.issuer", grants
            )
            if problem:
                problems.append(problem)


def _check_sandbox(grants: Grants, template: SandboxTemplate, problems: list[str]) -> None:
    problems.extend(grants.limits_problems(template.spec))
    _check_hosts(grants, template.spec.network.allow_hosts, "spec.network.allowHosts", problems)


def _check_agent(grants: Grants, agent: Agent, problems: list[str]) -> None:
    _check_hosts(grants, agent.spec.egress.allow_hosts, "spec.egress.allowHosts", problems)


CHECKS: dict[str, Checker] = {
    Model.KIND: _check_model,
    KnowledgeBase.KIND: _check_knowledge,
    MCPServer.KIND: _check_mcp,
    SandboxTemplate.KIND: _check_sandbox,
    Agent.KIND: _check_agent,
}


def default_config(root: Path) -> dict[str, Any]:
    """What ``hangar up`` grants on a laptop, written to the admission file on its first
    start so the owner sees it and can change it: the ``default`` namespace (theirs)
    may read folders under the one Hangar started in and name the usual provider
    variables; every other namespace gets nothing."""
    return {
        "environment": [
            {
                "names": [
                    "OPENAI_API_KEY",
                    "OPENAI_BASE_URL",
                    "ANTHROPIC_API_KEY",
                    "ANTHROPIC_BASE_URL",
                ],
                "namespaces": ["default"],
            }
        ],
        "folders": [{"path": str(root), "namespaces": ["default"]}],
    }


DEFAULT_HEADER = """\
# What this Hangar's administrator grants namespaces (read again when it changes).
# Without a grant, a namespace may not run anything on the host, read host files or
# variables, or reach loopback, private or metadata addresses. See docs/security.md.
"""


def write_default(path: Path, root: Path) -> bool:
    """Write the laptop defaults if there is no admission file yet; whether it did."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = DEFAULT_HEADER + yaml.safe_dump(default_config(root), sort_keys=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True

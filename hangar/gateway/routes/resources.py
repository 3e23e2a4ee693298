"""Apply, get, list and delete resources, and read their versions and schemas."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from hangar.errors import (
    AdmissionDeniedError,
    InvalidRequestError,
    InvalidYamlError,
    NamespaceMismatchError,
    ResourceNotFoundError,
)
from hangar.gateway.auth import ReadKey, RuntimeDep, WriteKey, refuse
from hangar.roles import Permission
from hangar.sandbox.registry import probe
from hangar.spec import (
    Agent,
    MCPServer,
    Model,
    SandboxTemplate,
    Secret,
    json_schema,
    kind_class,
    parse_documents,
    read_yaml,
)
from hangar.spec.base import Resource
from hangar.spec.budget import Budget
from hangar.spec.knowledge import KnowledgeBase
from hangar.spec.quota import Quota
from hangar.spec.toolpolicy import NamespaceToolPolicy
from hangar.store.records import ApiKey, StoredResource

router = APIRouter(tags=["resources"])

GOVERNING = frozenset({Budget.KIND, Quota.KIND, NamespaceToolPolicy.KIND})
"""Kinds that bound what the rest of a namespace may do: a namespace admin's to set."""


def _may_change(key: ApiKey, kind: str) -> None:
    permission = Permission.GOVERN if kind in GOVERNING else Permission.WRITE
    if not key.may(permission):
        raise refuse(key, permission)


async def _documents(request: Request) -> list[tuple[str, int, Any]]:
    body = await request.body()
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    text = body.decode("utf-8", errors="replace")
    if content_type in ("application/yaml", "application/x-yaml", "text/yaml"):
        return list(read_yaml(text, "request body"))
    try:
        data = json.loads(text) if text.strip() else None
    except (ValueError, RecursionError) as exc:
        raise InvalidYamlError(
            f"request body is not valid JSON: {str(exc)[:200]}",
            hint="send JSON, or YAML with Content-Type: application/yaml",
        ) from None
    if isinstance(data, dict) and "documents" in data:
        data = data["documents"]
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise InvalidRequestError(
            "expected a resource document, a list of them, or {'documents': [...]}"
        )
    return [("request body", i, doc) for i, doc in enumerate(data)]


async def admit_warm_pools(rt: RuntimeDep, namespace: str, resources: list[Resource]) -> None:
    """Refuse templates whose warm pools would, with the namespace's others, pass the
    administrator's ceiling on warm sandboxes per namespace."""
    templates = {r.name: r.spec.warm_pool for r in resources if isinstance(r, SandboxTemplate)}
    if not templates:
        return
    stored = await rt.resources.list_resources(namespace, SandboxTemplate.KIND)
    total = sum(int(s.spec.get("warmPool", 0)) for s in stored if s.name not in templates)
    total += sum(templates.values())
    most = rt.admission.grants(namespace).ceilings.warm_pool_total
    if total > most:
        raise AdmissionDeniedError(
            f"the namespace's SandboxTemplates would keep {total} warm sandboxes; the most "
            f"allowed is {most}",
            hint="lower spec.warmPool; nothing was applied",
        )


async def _warnings(rt: RuntimeDep, namespace: str, resource: Resource) -> list[str]:
    """References that do not resolve yet: allowed (order of apply is free), but said."""
    if isinstance(resource, Agent):
        model = resource.spec.model
        if (
            model != "local"
            and await rt.resources.get_resource(namespace, Model.KIND, model) is None
        ):
            return [f"Agent {resource.name!r} uses model {model!r}, which does not exist yet"]
    return []


@router.post("/v1/apply")
async def apply(request: Request, key: WriteKey, rt: RuntimeDep) -> dict[str, Any]:
    """Create or update resources; idempotent. All documents are validated, and admitted
    against what the administrator granted the namespace, before any is stored."""
    resources = parse_documents(await _documents(request))
    for resource in resources:
        ns = resource.metadata.namespace
        if ns is not None and ns != key.namespace:
            raise NamespaceMismatchError(
                f"{resource.kind} {resource.name!r} is in namespace {ns!r}, but this request "
                f"acts in {key.namespace!r}",
                hint="remove metadata.namespace or use a key of that namespace",
            )
        _may_change(key, resource.kind)
        rt.admission.check(key.namespace, resource)
    await admit_warm_pools(rt, key.namespace, resources)
    results = []
    for resource in resources:
        if isinstance(resource, Secret):
            resource = rt.secret_box.seal(resource)  # the store never sees a plain value
        stored, outcome = await rt.resources.apply_resource(key.namespace, resource)
        if isinstance(resource, SandboxTemplate) and (await probe(resource.spec.backend)).available:
            rt.sandboxes.warm_soon(resource.spec, key.namespace)
        results.append(
            {
                "kind": stored.kind,
                "name": stored.name,
                "namespace": stored.namespace,
                "generation": stored.generation,
                "outcome": outcome,
                "warnings": await _warnings(rt, key.namespace, resource),
            }
        )
    return {"results": results}


def _not_found(kind: str, name: str, namespace: str) -> ResourceNotFoundError:
    return ResourceNotFoundError(
        f"{kind} {name!r} not found in namespace {namespace!r}",
        hint=f"list them with `hangar get {kind.lower()}s`",
        details={"kind": kind, "name": name, "namespace": namespace},
    )


async def _get(rt: RuntimeDep, namespace: str, kind: str, name: str) -> StoredResource:
    cls = kind_class(kind)
    stored = await rt.resources.get_resource(namespace, cls.KIND, name)
    if stored is None:
        raise _not_found(cls.KIND, name, namespace)
    return stored


def _document(rt: RuntimeDep, stored: StoredResource) -> dict[str, Any]:
    """A stored resource as responses show it: secret values hidden, live status added."""
    document = stored.to_document()
    document["spec"] = kind_class(stored.kind).public_spec(stored.spec)
    if stored.kind == MCPServer.KIND:
        status = rt.hub.status(stored.namespace, stored.name)
        document["status"].update(status or {"state": "idle", "tools": None})
    return document


@router.get("/v1/resources/{kind}")
async def list_resources(kind: str, key: ReadKey, rt: RuntimeDep) -> dict[str, Any]:
    """The namespace's resources of a kind. MCPServers show their connection's state
    in this process (``idle`` until something uses them: listing starts nothing)."""
    cls = kind_class(kind)
    items = await rt.resources.list_resources(key.namespace, cls.KIND)
    return {"kind": cls.KIND, "items": [_document(rt, item) for item in items]}


@router.get("/v1/resources/{kind}/{name}")
async def get_resource(kind: str, name: str, key: ReadKey, rt: RuntimeDep) -> dict[str, Any]:
    return _document(rt, await _get(rt, key.namespace, kind, name))


@router.get("/v1/resources/{kind}/{name}/versions")
async def list_versions(kind: str, name: str, key: ReadKey, rt: RuntimeDep) -> dict[str, Any]:
    cls = kind_class(kind)
    versions = await rt.resources.list_versions(key.namespace, cls.KIND, name)
    if not versions:
        raise _not_found(cls.KIND, name, key.namespace)
    return {
        "kind": cls.KIND,
        "name": name,
        "versions": [
            {
                "generation": v.generation,
                "spec": cls.public_spec(v.spec),
                "createdAt": v.created_at.isoformat(),
            }
            for v in versions
        ],
    }


@router.delete("/v1/resources/{kind}/{name}")
async def delete_resource(kind: str, name: str, key: WriteKey, rt: RuntimeDep) -> dict[str, Any]:
    cls = kind_class(kind)
    _may_change(key, cls.KIND)
    if not await rt.resources.delete_resource(key.namespace, cls.KIND, name):
        raise _not_found(cls.KIND, name, key.namespace)
    if cls is KnowledgeBase:  # its chunks go with it
        await rt.knowledge.index.delete_base(key.namespace, name)
    if cls is MCPServer:  # its connection (a process, a session) goes with it
        await rt.hub.forget(key.namespace, name)
    return {"kind": cls.KIND, "name": name, "namespace": key.namespace, "deleted": True}


@router.get("/v1/schemas/{kind}")
async def schema(kind: str) -> Response:
    return Response(json.dumps(json_schema(kind), indent=2), media_type="application/json")

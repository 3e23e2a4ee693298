"""Kubernetes CustomResourceDefinitions generated from the spec's pydantic models.

One CRD per kind a team declares on a cluster, under ``hangar.dev/v1alpha1``: the same
YAML that ``hangar apply`` takes is a Kubernetes object there. Each CRD's schema is the
kind's JSON Schema made *structural*, as the API server requires: every ``$ref``
inlined, an optional field's ``null`` branch dropped (a null is pruned before
validation, as if the field were absent), unions of objects merged into one object
whose properties are all the branches' (which branch is set is then a CEL rule), the
fields that take anything marked ``x-kubernetes-preserve-unknown-fields``. Field
descriptions are kept, so ``kubectl explain agent.spec.tools`` helps. Cross-field rules
the loader enforces in Python travel as CEL (``x-kubernetes-validations``) declared
beside each validator (``SpecModel.CEL``), so a cluster refuses what ``hangar apply``
refuses, with the same message.

Credentials are not a CRD: a cluster keeps them in native ``Secret`` s, which a spec
names by ``secretKeyRef`` exactly as it names a Hangar ``Secret``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from hangar.spec.base import API_GROUP, SpecModel
from hangar.spec.registry import KINDS

VERSION = "v1alpha1"
HEADER = "# Generated from hangar/spec by `hangar crds`: do not edit.\n"
CATEGORY = "hangar"
NATIVE = frozenset({"Secret"})
"""Kinds a cluster already has: Hangar's ``Secret`` is Kubernetes' own."""

SHORT_NAMES: dict[str, list[str]] = {
    "Agent": ["hagent"],
    "Model": ["hmodel"],
    "MCPServer": ["hmcp"],
    "SandboxTemplate": ["hsbt"],
    "KnowledgeBase": ["hkb"],
    "Budget": ["hbudget"],
    "Quota": ["hquota"],
    "Trigger": ["htrigger"],
    "ToolPolicy": ["htoolpolicy"],
}
"""Prefixed: kagent's ``Agent`` and ``ModelConfig`` and agent-sandbox's
``SandboxTemplate`` may live on the same cluster, and a short name must be unique."""

_READY = {
    "name": "Ready",
    "type": "string",
    "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
COLUMNS: dict[str, list[dict[str, str]]] = {
    "Agent": [{"name": "Model", "type": "string", "jsonPath": ".spec.model"}],
    "Model": [
        {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
        {"name": "Model ID", "type": "string", "jsonPath": ".spec.model"},
    ],
    "MCPServer": [{"name": "Catalog", "type": "string", "jsonPath": ".spec.catalog.name"}],
    "SandboxTemplate": [{"name": "Backend", "type": "string", "jsonPath": ".spec.backend"}],
    "KnowledgeBase": [
        {"name": "Embedder", "type": "string", "jsonPath": ".spec.embedder.provider"}
    ],
    "Budget": [
        {"name": "Agent", "type": "string", "jsonPath": ".spec.agent"},
        {"name": "Period", "type": "string", "jsonPath": ".spec.period"},
        {"name": "Max Cost", "type": "number", "jsonPath": ".spec.maxCost"},
    ],
    "Quota": [{"name": "Max Running", "type": "integer", "jsonPath": ".spec.maxRunning"}],
    "Trigger": [{"name": "Agent", "type": "string", "jsonPath": ".spec.agent"}],
    "ToolPolicy": [],
}

_KEPT = (
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "required",
)
_FORMATS = frozenset({"date-time", "date", "uri", "email", "uuid", "hostname"})

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Written by the Hangar operator.",
    "properties": {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "description": "The generation the conditions describe.",
        },
        "hangarGeneration": {
            "type": "integer",
            "description": "The resource's generation inside Hangar.",
        },
        "conditions": {
            "type": "array",
            "description": "Accepted (the spec is valid) and Ready (Hangar serves it).",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": {
                "type": "object",
                "required": ["type", "status", "lastTransitionTime", "reason", "message"],
                "properties": {
                    "type": {"type": "string", "maxLength": 316},
                    "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                    "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                    "lastTransitionTime": {"type": "string", "format": "date-time"},
                    "reason": {"type": "string", "maxLength": 1024},
                    "message": {"type": "string", "maxLength": 32768},
                },
            },
        },
    },
}


def crd_kinds() -> list[str]:
    """The kinds that get a CRD, in the order the registry lists them."""
    return [kind for kind in KINDS if kind not in NATIVE]


def crd(kind: str) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    cls = KINDS[kind]
    schema = cls.model_json_schema(by_alias=True)
    spec_schema = _Structural(schema.get("$defs", {}), _cel_rules()).convert(
        schema["properties"]["spec"]
    )
    spec_schema.setdefault("description", f"The desired state of the {kind}.")
    doc = (cls.__doc__ or "").strip() or f"A Hangar {kind}."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{cls.PLURAL}.{API_GROUP}",
            "labels": {"app.kubernetes.io/name": "hangar", "app.kubernetes.io/part-of": "hangar"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": cls.PLURAL,
                "singular": kind.lower(),
                "shortNames": SHORT_NAMES[kind],
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [*COLUMNS[kind], _READY, _AGE],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": _prose(doc),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": STATUS_SCHEMA,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml(kind: str) -> str:
    """One CRD as its committed file holds it."""
    return HEADER + yaml.safe_dump(crd(kind), sort_keys=False, width=100, allow_unicode=True)


def crd_files() -> dict[str, str]:
    """Every file of the CRDs' folder by name: one per kind, and the Kustomization
    that lists them (``kubectl apply -k deploy/crds``)."""
    files = {f"{KINDS[kind].PLURAL}.yaml": crd_yaml(kind) for kind in crd_kinds()}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def write_crds(folder: Path) -> list[Path]:
    """The CRDs' folder written; the files written. Generated files of kinds that no
    longer exist are removed (only those: a file without the header is left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in crd_files().items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    for stale in set(folder.glob("*.yaml")) - set(written):
        if stale.read_text().startswith(HEADER):
            stale.unlink()
    return written


def _prose(text: object) -> str:
    """A docstring or description on one line: ``kubectl explain`` wraps it itself."""
    return " ".join(str(text).split())


def _cel_rules() -> dict[str, list[dict[str, str]]]:
    """Every spec model's CEL rules by its JSON Schema title (its class name)."""
    found: dict[str, list[dict[str, str]]] = {}

    def visit(cls: type[BaseModel]) -> None:
        for sub in cls.__subclasses__():
            if issubclass(sub, SpecModel) and sub.CEL:
                found[sub.__name__] = [dict(rule) for rule in sub.CEL]
            visit(sub)

    visit(SpecModel)
    return found


class _Structural:
    """Turns one kind's JSON Schema (pydantic's) into a structural OpenAPI v3 schema."""

    def __init__(self, defs: dict[str, Any], cel: dict[str, list[dict[str, str]]]) -> None:
        self.defs = defs
        self.cel = cel

    def convert(self, node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            target = dict(self.defs[node["$ref"].rsplit("/", 1)[1]])
            if "description" in node:
                target["description"] = node["description"]
            return self.convert(target)
        if "anyOf" in node:
            return self._union(node)
        out: dict[str, Any] = {k: node[k] for k in _KEPT if k in node}
        if "description" in out:
            out["description"] = _prose(out["description"])
        if "const" in node:
            out["enum"] = [node["const"]]
        if node.get("format") in _FORMATS:
            out["format"] = node["format"]
        if "exclusiveMinimum" in node:  # JSON Schema's number is OpenAPI 3.0's flag
            out["minimum"], out["exclusiveMinimum"] = node["exclusiveMinimum"], True
        if "exclusiveMaximum" in node:
            out["maximum"], out["exclusiveMaximum"] = node["exclusiveMaximum"], True
        kind = node.get("type")
        if kind is None:  # any JSON value
            out["x-kubernetes-preserve-unknown-fields"] = True
            return out
        out["type"] = kind
        if kind in ("string", "integer", "number", "boolean") and node.get("default") is not None:
            out["default"] = node["default"]  # defaulted before CEL sees the object
        if kind == "array":
            out["items"] = self.convert(node.get("items", {}))
        if kind == "object":
            self._object(node, out)
        return out

    def _object(self, node: dict[str, Any], out: dict[str, Any]) -> None:
        if "properties" in node:
            out["properties"] = {k: self.convert(v) for k, v in node["properties"].items()}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            out["additionalProperties"] = self.convert(extra)
        elif extra is True or ("properties" not in node and extra is None):
            out["x-kubernetes-preserve-unknown-fields"] = True
        rules = self.cel.get(node.get("title", ""))
        if rules:
            out["x-kubernetes-validations"] = rules

    def _union(self, node: dict[str, Any]) -> dict[str, Any]:
        options = [self.convert(o) for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            merged = options[0]
        elif all(o.get("type") == "object" and "properties" in o for o in options):
            merged = {"type": "object", "properties": {}}
            for option in options:
                merged["properties"].update(option["properties"])
        elif {o.get("type") for o in options} == {"integer", "string"}:
            merged = {"x-kubernetes-int-or-string": True}
        else:  # a value or an object, say: the loader checks which
            merged = {"x-kubernetes-preserve-unknown-fields": True}
        if "description" in node:
            merged["description"] = _prose(node["description"])
        return merged

"""The CustomResourceDefinitions: generated from the spec, committed under
``deploy/crds/``, valid for a Kubernetes API server, and refusing on a cluster what
``hangar apply`` refuses, with the same message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from hangar.spec.crds import crd, crd_files, crd_kinds
from hangar.spec.loader import load_path, parse_document
from hangar.spec.registry import KINDS

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "deploy" / "crds"


def test_the_committed_crds_are_what_the_spec_generates() -> None:
    generated = crd_files()
    assert {f"{KINDS[kind].PLURAL}.yaml" for kind in crd_kinds()} < set(generated)
    for name, text in generated.items():
        path = CRDS / name
        assert path.exists(), f"{path} is missing: run `hangar crds deploy/crds`"
        assert path.read_text() == text, f"{path} is stale: run `hangar crds deploy/crds`"
    assert sorted(p.name for p in CRDS.glob("*.yaml")) == sorted(generated)


def test_every_kind_a_team_declares_has_a_crd_and_credentials_stay_native() -> None:
    assert set(crd_kinds()) >= {
        "Agent",
        "Model",
        "MCPServer",
        "SandboxTemplate",
        "KnowledgeBase",
        "Budget",
        "Quota",
        "Trigger",
    }
    assert "Secret" not in crd_kinds()


@pytest.mark.parametrize("kind", crd_kinds())
def test_a_crd_is_valid_for_the_api_server_and_structural(kind: str) -> None:
    document = crd(kind)
    kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    version = document["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert (
        document["spec"]["names"]["shortNames"]
        and "hangar" in document["spec"]["names"]["categories"]
    )
    assert [c["name"] for c in version["additionalPrinterColumns"]][-2:] == ["Ready", "Age"]
    structural(version["schema"]["openAPIV3Schema"], "")


def structural(node: dict[str, Any], where: str) -> None:
    """The API server's rules for a structural schema, as far as this schema uses them."""
    assert "$ref" not in node and "anyOf" not in node and "allOf" not in node, where
    assert "additionalProperties" not in node or "properties" not in node, where
    assert node.get("additionalProperties") is not False, where
    assert (
        "type" in node
        or node.get("x-kubernetes-preserve-unknown-fields")
        or node.get("x-kubernetes-int-or-string")
    ), f"{where or '.'} has no type"
    if where.count(".") >= 1 and where.split(".")[1:2] == ["spec"]:
        assert ("title" not in node and "default" not in node) or node.get("type") != "object"
    for name, child in node.get("properties", {}).items():
        structural(child, f"{where}.{name}")
    if isinstance(node.get("items"), dict):
        structural(node["items"], f"{where}[]")
    if isinstance(node.get("additionalProperties"), dict):
        structural(node["additionalProperties"], f"{where}{{}}")


def test_kubectl_explain_has_descriptions() -> None:
    spec = crd("Agent")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["model"]["description"] == "Name of a Model in the same namespace."
    tools = spec["properties"]["tools"]["items"]
    assert "built-in tool" in tools["properties"]["builtin"]["description"]


def examples() -> list[dict[str, Any]]:
    found = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        load_path(path)  # what Hangar takes
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def test_every_example_validates_against_its_crd() -> None:
    checked = 0
    for document in examples():
        if document["kind"] not in crd_kinds():
            continue
        schema = crd(document["kind"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        openapi_validate(document, schema)
        assert cel_problems(document) == [], document["metadata"]["name"]
        checked += 1
    assert checked >= 5


def openapi_validate(document: dict[str, Any], schema: dict[str, Any]) -> None:
    """OpenAPI 3.0's dialect through JSON Schema draft 4 (boolean exclusive bounds)."""
    jsonschema.Draft4Validator(schema).validate(document)


def defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """What the API server does before validation: scalar defaults filled in objects."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        out = {
            k: defaulted(v, properties.get(k, schema.get("additionalProperties", {})))
            for k, v in value.items()
        }
        for name, child in properties.items():
            if name not in out and "default" in child:
                out[name] = child["default"]
        return out
    if isinstance(value, list):
        return [defaulted(v, schema.get("items", {})) for v in value]
    return value


def cel_problems(document: dict[str, Any]) -> list[str]:
    """Every CEL rule of the kind's CRD run where the API server runs it; the messages
    of those that fail."""
    schema = crd(document["kind"])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    env = celpy.Environment()
    problems: list[str] = []

    def visit(value: Any, node: dict[str, Any]) -> None:
        if isinstance(value, dict):
            for rule in node.get("x-kubernetes-validations", []):
                data = {"self": celpy.json_to_cel(value)}
                if not env.program(env.compile(rule["rule"])).evaluate(data):
                    if "messageExpression" in rule:
                        expression = env.compile(rule["messageExpression"])
                        problems.append(str(env.program(expression).evaluate(data)))
                    else:
                        problems.append(rule["message"])
            for name, child in value.items():
                sub = node.get("properties", {}).get(name) or node.get("additionalProperties")
                if isinstance(sub, dict):
                    visit(child, sub)
        elif isinstance(value, list):
            for item in value:
                visit(item, node.get("items", {}))

    visit(defaulted(document, schema), schema)
    return problems


def resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "hangar.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x"},
        "spec": spec,
    }


REFUSED = [
    resource("Agent", {"tools": [{"builtin": "current_time", "mcp": "github"}]}),
    resource("Agent", {"tools": [{}]}),
    resource("Agent", {"tools": [{"builtin": "current_time", "include": ["a*"]}]}),
    resource("Budget", {"period": "day"}),
    resource("KnowledgeBase", {"embedder": {"baseUrl": "https://e.example/v1"}}),
    resource(
        "KnowledgeBase",
        {
            "embedder": {
                "provider": "openai",
                "apiKeyEnv": "K",
                "apiKey": {"secret": "s", "key": "k"},
            }
        },
    ),
    resource("KnowledgeBase", {"chunking": {"maxTokens": 64, "overlap": 64}}),
    resource("KnowledgeBase", {"sources": [{"folder": "/docs", "url": "https://e.example"}]}),
    resource("KnowledgeBase", {"sources": [{}]}),
    resource("MCPServer", {}),
    resource("MCPServer", {"stdio": {"command": "x"}, "catalog": {"name": "time"}}),
    resource("Model", {"provider": "scripted"}),
    resource("Model", {"provider": "scripted", "script": [{}]}),
    resource("Model", {"provider": "anthropic"}),
    resource(
        "Model",
        {
            "provider": "openai",
            "model": "m",
            "apiKeyEnv": "K",
            "apiKey": {"secret": "s", "key": "k"},
        },
    ),
    resource(
        "Model",
        {"provider": "openai", "model": "m", "baseUrl": "https://e.example", "baseUrlEnv": "U"},
    ),
    resource("SandboxTemplate", {"network": {"allowHosts": ["pypi.org"]}}),
    resource("SandboxTemplate", {"backend": "wasm", "network": {"mode": "allowlist"}}),
    resource("Trigger", {"agent": "a"}),
]


@pytest.mark.parametrize("document", REFUSED, ids=lambda d: d["kind"])
def test_a_cluster_refuses_what_hangar_apply_refuses_with_the_same_message(
    document: dict[str, Any],
) -> None:
    parsed, refused = parse_document(document)
    assert parsed is None and len(refused) == 1
    problems = cel_problems(document)
    assert len(problems) == 1, problems
    assert problems[0] in refused[0].message


def test_a_valid_resource_passes_every_rule() -> None:
    for document in (
        resource(
            "Model", {"provider": "openai", "model": "gpt", "apiKey": {"secret": "s", "key": "k"}}
        ),
        resource(
            "SandboxTemplate",
            {"backend": "gvisor", "network": {"mode": "allowlist", "allowHosts": ["a.b"]}},
        ),
        resource(
            "KnowledgeBase",
            {
                "chunking": {"maxTokens": 64, "overlap": 8},
                "sources": [{"url": "https://e.example"}],
            },
        ),
    ):
        assert parse_document(document)[1] == []
        assert cel_problems(document) == []

"""Loading manifests: every problem names the file, the document, the field path and
what was expected; nothing is accepted unless everything is valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hangar.errors import InvalidSpecError, InvalidYamlError, UnknownKindError
from hangar.spec import Agent, Model, json_schema, kind_class, load_path, parse_document
from hangar.spec.base import NAME_PATTERN
from tests.helpers import agent, doc

GOOD = """\
apiVersion: hangar.dev/v1alpha1
kind: Agent
metadata: {name: support, labels: {team: care}}
spec:
  model: local
  instructions: Be brief.
  tools: [{builtin: current_time}]
---
apiVersion: hangar.dev/v1alpha1
kind: Model
metadata: {name: gpt}
spec: {provider: openai, model: gpt-4o-mini, baseUrl: "http://localhost:1/v1"}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems(exc: pytest.ExceptionInfo[InvalidSpecError]) -> list[dict[str, object]]:
    return list(exc.value.details["problems"])


def test_multi_document_file_loads_typed_resources(tmp_path: Path) -> None:
    loaded = load_path(write(tmp_path, "a.yaml", GOOD))
    assert [type(r) for r in loaded] == [Agent, Model]
    support = loaded[0]
    assert isinstance(support, Agent)
    assert support.spec.tools[0].builtin == "current_time"
    assert support.metadata.labels == {"team": "care"}


def test_folder_loads_every_manifest_recursively_in_order(tmp_path: Path) -> None:
    write(tmp_path, "b/one.yaml", GOOD.split("---")[0])
    write(tmp_path, "a/two.yml", GOOD.split("---")[1])
    write(tmp_path, "README.md", "not a manifest")
    assert [r.name for r in load_path(tmp_path)] == ["gpt", "support"]


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "kind: Agent\nmetadata: {name: x\n")
    with pytest.raises(InvalidYamlError) as exc:
        load_path(path)
    assert exc.value.code == "invalid_yaml"
    assert str(path) in exc.value.message and "line" in exc.value.message


def test_unknown_kind_is_its_own_error_listing_known_kinds(tmp_path: Path) -> None:
    path = write(
        tmp_path, "w.yaml", "apiVersion: hangar.dev/v1alpha1\nkind: Widget\nmetadata: {name: w}\n"
    )
    with pytest.raises(UnknownKindError) as exc:
        load_path(path)
    assert exc.value.code == "unknown_kind"
    assert "Widget" in exc.value.message and "Agent" in exc.value.message


def test_unknown_field_is_an_error_not_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", GOOD.replace("instructions:", "instructoins:"))
    with pytest.raises(InvalidSpecError) as exc:
        load_path(path)
    (problem,) = problems(exc)
    assert problem == {
        "source": str(path),
        "document": 0,
        "path": "spec.instructoins",
        "message": "unknown field (check the spelling; see `hangar schema KIND`)",
    }


def test_wrong_type_names_path_and_expectation(tmp_path: Path) -> None:
    text = GOOD.replace("tools: [{builtin: current_time}]", "limits: {maxSteps: many}")
    with pytest.raises(InvalidSpecError) as exc:
        load_path(write(tmp_path, "a.yaml", text))
    (problem,) = problems(exc)
    assert problem["path"] == "spec.limits.maxSteps"
    assert "integer" in str(problem["message"])


def test_every_problem_in_every_document_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace("name: support", "name: Support").replace(
        "provider: openai", "provider: acme"
    )
    with pytest.raises(InvalidSpecError) as exc:
        load_path(write(tmp_path, "a.yaml", text))
    found = {(p["document"], p["path"]) for p in problems(exc)}
    assert found == {(0, "metadata.name"), (1, "spec.provider")}


def test_the_same_resource_twice_is_refused(tmp_path: Path) -> None:
    first = GOOD.split("---")[0]
    with pytest.raises(InvalidSpecError) as exc:
        load_path(write(tmp_path, "a.yaml", first + "---\n" + first))
    assert "declared twice" in exc.value.message


def test_wrong_api_version_is_refused() -> None:
    resource, found = parse_document(agent("a", "local") | {"apiVersion": "hangar.dev/v9"})
    assert resource is None and found[0].path == "apiVersion"


def test_provider_specific_fields_are_checked() -> None:
    resource, found = parse_document(doc("Model", "m", {"provider": "scripted"}))
    assert resource is None and "script" in found[0].message


def test_a_document_read_back_applies_again() -> None:
    """`hangar get -o yaml | hangar apply -f -` must round-trip: server fields are accepted."""
    served = agent("a", "local") | {
        "metadata": {"name": "a", "namespace": "default", "generation": 3, "uid": "u"},
        "status": {"observedGeneration": 3},
    }
    resource, found = parse_document(served)
    assert resource is not None, found


@given(st.text(alphabet="abcXYZ-_.019é ", min_size=0, max_size=70))
def test_names_follow_kubernetes_dns_label_rules(name: str) -> None:
    resource, _ = parse_document(agent(name, "local"))
    valid = bool(re.match(NAME_PATTERN, name)) and len(name) <= 63
    assert (resource is not None) == valid


def test_kinds_resolve_by_singular_plural_and_any_case() -> None:
    assert kind_class("Agent") is kind_class("agents") is kind_class("agent") is Agent
    with pytest.raises(UnknownKindError):
        kind_class("gadgets")


def test_json_schema_uses_wire_names_and_forbids_extra_fields() -> None:
    schema = json_schema("Agent")
    spec = schema["$defs"]["AgentSpec"]
    assert spec["additionalProperties"] is False
    assert "maxOutputTokens" in spec["properties"]
    assert "apiVersion" in schema["properties"]

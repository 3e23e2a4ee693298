"""The envelope every Hangar resource shares, Kubernetes style.

A document is ``apiVersion``, ``kind``, ``metadata`` (name, namespace, labels),
``spec`` and a read-only ``status``. Field names are camelCase on the wire, as in
Kubernetes, and snake_case in Python. Unknown fields are errors everywhere: a
misspelt field silently dropped is a production incident waiting to happen.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from hangar.errors import shown

API_GROUP = "hangar.dev"
API_VERSION = f"{API_GROUP}/v1alpha1"

NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAME_MAX = 63
_NAME_RE = re.compile(NAME_PATTERN)
LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def check_name(value: str, what: str = "name") -> str:
    """DNS-1123 label rules, so every name is valid as a Kubernetes object name too."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > NAME_MAX:
        raise ValueError(f"{what} must be at most {NAME_MAX} characters, got {len(value)}")
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {shown(value)} must be lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class SpecModel(BaseModel):
    """Base of every spec object: camelCase aliases, unknown fields forbidden."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )

    CEL: ClassVar[tuple[dict[str, str], ...]] = ()
    """The model's cross-field rules as CEL, for its CustomResourceDefinition
    (``x-kubernetes-validations``: ``rule`` and ``message`` or ``messageExpression``):
    what its ``model_validator`` refuses, with the same message. Beside the validator,
    so the two change together; ``tests/spec/test_crds.py`` runs both on each case."""


class Metadata(SpecModel):
    name: str = Field(description="DNS-1123 label, unique per kind in a namespace.")
    namespace: str | None = Field(
        default=None, description="The tenant; defaults to the API key's namespace."
    )
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the server; accepted on input so `get -o yaml | apply` round-trips.
    generation: int | None = Field(default=None, description="Read only.")
    uid: str | None = Field(default=None, description="Read only.")
    created_at: datetime | None = Field(default=None, description="Read only.")
    updated_at: datetime | None = Field(default=None, description="Read only.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value, "namespace")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not LABEL_KEY_RE.match(key) or len(key) > 253:
                raise ValueError(f"label key {shown(key)} is not a valid Kubernetes label key")
        return value


class Resource(SpecModel):
    """A document of one kind. Subclasses pin ``kind`` and type ``spec``."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]

    api_version: str = Field(alias="apiVersion", description=f"Always {API_VERSION!r}.")
    kind: str
    metadata: Metadata
    spec: Any
    status: dict[str, Any] | None = Field(default=None, description="Read only.")

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != API_VERSION:
            raise ValueError(f"apiVersion must be {API_VERSION!r}, got {shown(value)}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    def spec_json(self) -> dict[str, Any]:
        """The spec as stored: camelCase, defaults filled in, JSON types only."""
        spec = self.spec
        assert isinstance(spec, BaseModel)
        return spec.model_dump(mode="json", by_alias=True)

    @staticmethod
    def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
        """What API responses show of a stored spec; kinds holding secrets hide them."""
        return spec

    def spec_hash(self) -> str:
        """Identity of the desired state: the generation rises only when this changes."""
        canonical = json.dumps(self.spec_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

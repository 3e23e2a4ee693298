"""``Secret``: named values (API tokens, passwords) that other resources reference by
name and never copy. Hangar stores them sealed (see ``hangar/store/secrets.py``)
and shows only their keys."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator

from hangar.errors import shown
from hangar.spec.base import Resource, SpecModel, check_name

KEY = re.compile(r"^[A-Za-z0-9_.-]{1,253}$")
REDACTED = "<redacted>"


class SecretSpec(SpecModel):
    data: dict[str, str] = Field(
        description="Values by key, as plain text. Stored encrypted; never shown again."
    )
    digest: str | None = Field(
        default=None,
        description="Set by Hangar when it seals the values: a keyed hash that tells whether "
        "an applied Secret changed without storing or comparing the values themselves.",
    )

    @field_validator("data")
    @classmethod
    def _keys(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("a Secret needs at least one key in 'data'")
        for key, text in value.items():
            if not KEY.match(key):
                raise ValueError(
                    f"secret key {shown(key)} is not valid: use letters, digits, '_', '.' and '-'"
                )
            if text == REDACTED:
                raise ValueError(
                    f"data.{key} is {REDACTED!r}, the placeholder Hangar shows when a Secret "
                    "is read back; give the real value"
                )
        return value


class Secret(Resource):
    KIND: ClassVar[str] = "Secret"
    PLURAL: ClassVar[str] = "secrets"
    kind: Literal["Secret"]
    spec: SecretSpec

    def spec_hash(self) -> str:
        # Sealed values change with every encryption; the digest changes only with them.
        return self.spec.digest or super().spec_hash()

    @staticmethod
    def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
        """What API responses show of a stored Secret: its keys, never a value."""
        return {"data": {key: REDACTED for key in spec.get("data", {})}}


class SecretKeyRef(SpecModel):
    """A value taken from a key of a Secret in the same namespace."""

    secret: str = Field(description="Name of the Secret.")
    key: str = Field(description="Key inside the Secret's data.")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str) -> str:
        return check_name(value, "secret name")

    def __str__(self) -> str:
        return f"{self.secret}/{self.key}"


ValueOrSecret = Annotated[
    str | SecretKeyRef,
    Field(description="A literal value, or {secret: NAME, key: KEY} to take it from a Secret."),
]

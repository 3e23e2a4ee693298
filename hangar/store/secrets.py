"""Secrets at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256) before the store
sees them, opened only where a value is handed to the thing that needs it (an MCP
server's environment or headers).

The key comes from ``HANGAR_SECRET_KEYS`` (Fernet keys, comma-separated: the first
seals, all open, so keys rotate without re-applying every Secret) or from a key
file, by default ``$HANGAR_HOME/secret.key``, created with mode 0600 on first use.
Processes that share one database must share the key: on a cluster, set the
environment variable from a Kubernetes Secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from hangar.errors import ConfigurationError, SecretNotFoundError
from hangar.spec.secret import Secret, SecretKeyRef, SecretSpec
from hangar.store.base import ResourceStore

SEALED = "sealed:v1:"


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("no secret key configured")
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise ConfigurationError(
                "a secret key is not a valid Fernet key (32 url-safe base64-encoded bytes)",
                hint="make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'",
            ) from None
        self._digest_key = hashlib.sha256(b"hangar-secret-digest\0" + keys[0]).digest()

    @classmethod
    def from_environment(cls, home: Path) -> SecretBox:
        configured = os.environ.get("HANGAR_SECRET_KEYS", "").strip()
        if configured:
            return cls([k.strip().encode() for k in configured.split(",") if k.strip()])
        path = Path(os.environ.get("HANGAR_SECRET_KEY_FILE") or home / "secret.key")
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                pass
            else:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(Fernet.generate_key())
        return cls([line.strip() for line in path.read_bytes().splitlines() if line.strip()])

    def seal(self, secret: Secret) -> Secret:
        """The same Secret with every value encrypted and a digest of the plain values."""
        data = secret.spec.data
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        digest = hmac.new(self._digest_key, canonical, hashlib.sha256).hexdigest()
        sealed = {k: SEALED + self._fernet.encrypt(v.encode()).decode() for k, v in data.items()}
        return secret.model_copy(update={"spec": SecretSpec(data=sealed, digest=digest)})

    def open(self, value: str) -> str:
        if not value.startswith(SEALED):
            raise ConfigurationError("a stored secret value is not sealed")
        try:
            return self._fernet.decrypt(value[len(SEALED) :].encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored secret cannot be opened with the configured secret keys",
                hint="set HANGAR_SECRET_KEYS to include the key the secret was sealed with, "
                "or apply the Secret again",
            ) from None


class SecretResolver:
    """Opens secret references for one purpose at a time; nothing is cached, so a
    re-applied or deleted Secret takes effect on the next use."""

    def __init__(self, store: ResourceStore, box: SecretBox) -> None:
        self.store = store
        self.box = box

    async def resolve(self, namespace: str, value: str | SecretKeyRef, where: str) -> str:
        if isinstance(value, str):
            return value
        stored = await self.store.get_resource(namespace, Secret.KIND, value.secret)
        if stored is None:
            raise SecretNotFoundError(
                f"{where} references Secret {value.secret!r}, which does not exist in "
                f"namespace {namespace!r}",
                hint="apply the Secret, e.g. `hangar secret set NAME KEY=VALUE`",
                details={"secret": value.secret},
            )
        sealed = stored.spec.get("data", {}).get(value.key)
        if sealed is None:
            raise SecretNotFoundError(
                f"{where} references key {value.key!r} of Secret {value.secret!r}, which has "
                f"only {sorted(stored.spec.get('data', {}))}",
                details={"secret": value.secret, "key": value.key},
            )
        return self.box.open(sealed)

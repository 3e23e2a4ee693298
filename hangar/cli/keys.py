"""``hangar keys`` and ``hangar whoami``: API keys with roles and expiries, listed and
revoked. What a key may do is the server's to decide; these only ask."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.table import Table

from hangar.cli.render import console, dump, err_console
from hangar.errors import InvalidRequestError
from hangar.roles import Role

keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def _client() -> Any:
    from hangar.cli.main import client

    return client()


def seconds(duration: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` in seconds."""
    match = _DURATION.match(duration.strip().lower())
    if match is None:
        raise InvalidRequestError(
            f"{duration!r} is not a duration", hint="write it like 3600, 15m, 12h, 30d or 2w"
        )
    return float(match.group(1)) * _SECONDS[match.group(2)]


@keys_app.command("create")
def create(
    namespace: Annotated[
        str | None, typer.Option(help="The namespace the key is bound to (default: yours).")
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "key",
    role: Annotated[
        Role, typer.Option(help="What it may do: " + ", ".join(r.value for r in Role) + ".")
    ] = Role.DEVELOPER,
    expires: Annotated[
        str | None, typer.Option(help="Stops working after this long: 12h, 30d, 2w.")
    ] = None,
) -> None:
    """Create an API key; its secret is shown once."""
    body: dict[str, Any] = {"name": name, "role": role.value}
    if namespace is not None:
        body["namespace"] = namespace
    if expires is not None:
        body["expiresIn"] = seconds(expires)
    result = _client().request("POST", "/v1/keys", json=body)
    console.print(result["key"], highlight=False)
    until = f", until {result['expires_at']}" if result["expires_at"] else ""
    err_console.print(
        f"key {result['id']} ({result['role']}) for namespace {result['namespace']}{until}",
        style="dim",
    )


@keys_app.command("list")
def list_keys(
    all: Annotated[bool, typer.Option("--all", help="Every namespace's (admin keys).")] = False,
    output: OutputOpt = "table",
) -> None:
    """The keys of your namespace (never their secrets)."""
    items = _client().request("GET", "/v1/keys", params={"all": "true"} if all else {})["items"]
    if output != "table":
        dump(items, output)
        return
    table = Table("ID", "NAMESPACE", "NAME", "ROLE", "PREFIX", "LAST USED", "STATE")
    for item in items:
        state = (
            "revoked"
            if item["revoked_at"]
            else (f"until {item['expires_at']}" if item["expires_at"] else "active")
        )
        table.add_row(
            item["id"],
            item["namespace"],
            item["name"],
            item["role"],
            item["prefix"] + "…",
            item["last_used_at"] or "never",
            state,
        )
    console.print(table)


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key: within a second no Hangar process accepts it."""
    result = _client().request("DELETE", f"/v1/keys/{key_id}")
    console.print(f"key {result['id']} revoked at {result['revoked_at']}")


def whoami(output: OutputOpt = "table") -> None:
    """The key you use: its namespace, its role and what it may do."""
    me = _client().request("GET", "/v1/whoami")
    if output != "table":
        dump(me, output)
        return
    console.print(f"key {me['id']} ({me['name']}, {me['prefix']}…) in namespace {me['namespace']}")
    console.print(f"role {me['role']}: may {', '.join(me['permissions'])}")

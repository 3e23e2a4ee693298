"""``hangar memories`` and ``hangar users``: what Hangar remembers of each end user,
and forgetting a user."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from hangar.cli.render import console, dump

memories_app = typer.Typer(help="Facts remembered about end users.", no_args_is_help=True)
users_app = typer.Typer(help="End users (a run's --user).", no_args_is_help=True)
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")]


def _client() -> Any:
    from hangar.cli.main import client

    return client()


def _path(user: str) -> str:
    return f"/v1/users/{quote(user, safe='')}"


@memories_app.command("list")
def list_memories(user: str, output: OutputOpt = "table") -> None:
    """The facts remembered about a user, oldest first."""
    items = _client().request("GET", f"{_path(user)}/memories")["items"]
    if output != "table":
        dump(items, output)
        return
    table = Table("ID", "FACT", "LEARNT FROM", "UPDATED")
    for item in items:
        table.add_row(item["id"], item["text"], item["run_id"] or "(by hand)", item["updated_at"])
    console.print(table)


@memories_app.command("add")
def add_memory(user: str, text: str) -> None:
    """Remember a fact about a user."""
    memory = _client().request("POST", f"{_path(user)}/memories", json={"text": text})
    console.print(memory["id"])


@memories_app.command("edit")
def edit_memory(user: str, memory_id: str, text: str) -> None:
    """Reword a remembered fact."""
    _client().request("PATCH", f"{_path(user)}/memories/{memory_id}", json={"text": text})
    console.print(f"memory {memory_id} updated")


@memories_app.command("delete")
def delete_memory(user: str, memory_id: str) -> None:
    """Forget one fact."""
    _client().request("DELETE", f"{_path(user)}/memories/{memory_id}")
    console.print(f"memory {memory_id} deleted")


@users_app.command("forget")
def forget(
    user: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm.")] = False,
) -> None:
    """Remove every trace of a user: memories, runs, sessions, traces."""
    if not yes:
        typer.confirm(f"Forget user {user!r} and delete all their runs and sessions?", abort=True)
    removed = _client().request("DELETE", _path(user))["removed"]
    console.print(
        f"forgot {user}: {removed['memories']} memories, {removed['runs']} runs, "
        f"{removed['sessions']} sessions"
    )

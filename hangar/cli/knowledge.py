"""``hangar kb``: ingest documents into a knowledge base (with a progress bar), list
its sources, search it."""

from __future__ import annotations

import mimetypes
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hangar.cli.render import console, dump

kb_app = typer.Typer(help="Knowledge bases: ingest, list sources, search.", no_args_is_help=True)
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")]
POLL_SECONDS = 0.5


def _client() -> Any:
    from hangar.cli.main import client

    return client()


def _files(paths: list[Path]) -> list[tuple[str, Path]]:
    """Each file with its source name: a file's own name, or for a folder's files
    their path inside the folder (what the server indexes them as)."""
    found: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                (p.relative_to(path).as_posix(), p) for p in sorted(path.rglob("*")) if p.is_file()
            )
        elif path.is_file():
            found.append((path.name, path))
        else:
            raise typer.BadParameter(f"{path} is not a file or folder", param_hint="FILES")
    return found


@kb_app.command("ingest")
def ingest(
    name: str,
    files: Annotated[
        list[Path] | None, typer.Argument(help="Files or folders to upload; none: its sources.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job to its end.")] = True,
) -> None:
    """Ingest files (or the base's declared sources), showing the job's progress."""
    api = _client()
    path = f"/v1/knowledgebases/{name}/ingestions"
    if files:
        with ExitStack() as stack:
            parts = [
                (
                    "file",
                    (
                        name,
                        stack.enter_context(file.open("rb")),
                        mimetypes.guess_type(file.name)[0] or "application/octet-stream",
                    ),
                )
                for name, file in _files(files)
            ]
            job = api.request("POST", path, files=parts)
    else:
        job = api.request("POST", path)
    if not wait:
        console.print(job["id"])
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[chunks]} chunks"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task(name, total=job["total"], chunks=0)
        while job["status"] == "running":
            time.sleep(POLL_SECONDS)
            job = api.request("GET", f"{path}/{job['id']}")
            progress.update(bar, completed=job["done"], chunks=job["chunks"])
    for error in job["errors"]:
        console.print(f"[red]✗[/red] {error['source']}: {error['message']}")
    summary = (
        f"{job['status']}: {job['indexed']} indexed, {job['unchanged']} unchanged, "
        f"{len(job['errors'])} failed, {job['chunks']} chunks"
    )
    if job.get("removed"):
        summary += f", {job['removed']} removed"
    console.print(summary)
    if job["status"] != "succeeded":
        message = (job.get("error") or {}).get("message", "")
        console.print(f"[red]{message}[/red]")
        raise typer.Exit(1)


@kb_app.command("sources")
def sources(name: str, output: OutputOpt = "table") -> None:
    """The sources indexed in a knowledge base, with their chunk counts."""
    items = _client().request("GET", f"/v1/knowledgebases/{name}/sources")["items"]
    if output != "table":
        dump(items, output)
        return
    table = Table("SOURCE", "CHUNKS", "DIGEST")
    for item in items:
        table.add_row(item["source"], str(item["chunks"]), item["digest"][:12])
    console.print(table)


@kb_app.command("remove")
def remove(name: str, source: str) -> None:
    """Remove one source's chunks from a knowledge base."""
    done = _client().request(
        "DELETE", f"/v1/knowledgebases/{name}/sources", params={"source": source}
    )
    console.print(f"{source}: {done['chunks']} chunks removed")


@kb_app.command("search")
def search(
    name: str,
    query: str,
    k: Annotated[int, typer.Option("-k", help="How many passages.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, vector or text.")] = "hybrid",
    output: OutputOpt = "table",
) -> None:
    """Search a knowledge base as an agent would."""
    body = {"query": query, "k": k, "mode": mode}
    items = _client().request("POST", f"/v1/knowledgebases/{name}/search", json=body)["items"]
    if output != "table":
        dump(items, output)
        return
    for n, item in enumerate(items, start=1):
        cite = item["citation"]
        title = f" — {cite['title']}" if cite["title"] else ""
        console.print(f"[bold][{n}] {cite['source']}#{cite['chunk']}{title}[/bold]")
        console.print(item["text"], highlight=False)
        console.print()

"""``hangar``: the command line, talking to the server over HTTP like kubectl."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from hangar.cli.client import Client, client_config
from hangar.cli.keys import keys_app, whoami
from hangar.cli.knowledge import kb_app
from hangar.cli.render import (
    console,
    conversation_view,
    dump,
    err_console,
    print_error,
    resource_table,
    run_tree,
    runs_table,
    sessions_table,
    span_tree,
    usage_table,
)
from hangar.cli.users import memories_app, users_app
from hangar.errors import HangarError
from hangar.runtime.events import Delta, RunError, RunFinished, ToolCalled, ToolResult, parse

app = typer.Typer(
    name="hangar",
    help="Run AI agents in production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
runs_app = typer.Typer(help="Inspect runs.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Run code in sandboxes.", no_args_is_help=True)
secret_app = typer.Typer(help="Manage secrets (stored encrypted).", no_args_is_help=True)
sessions_app = typer.Typer(
    help="Conversations whose runs see the turns before.", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")
app.add_typer(secret_app, name="secret")
app.add_typer(sessions_app, name="sessions")
app.add_typer(keys_app, name="keys")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(kb_app, name="kb")
app.add_typer(memories_app, name="memories")
app.add_typer(users_app, name="users")
app.command()(whoami)

_conn: dict[str, str | None] = {"url": None, "api_key": None, "namespace": None}

UrlOpt = Annotated[str | None, typer.Option("--url", help="Server URL [env HANGAR_URL].")]
KeyOpt = Annotated[str | None, typer.Option("--api-key", help="API key [env HANGAR_API_KEY].")]
NamespaceOpt = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="Act in this namespace (admin keys; others only their own) [env HANGAR_NAMESPACE].",
    ),
]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, yaml or json.")]
ProcessesOpt = Annotated[
    int | None,
    typer.Option(
        help="Server processes sharing the port; default one per core on PostgreSQL, one "
        "on SQLite [env HANGAR_PROCESSES]."
    ),
]


@app.callback()
def _main(url: UrlOpt = None, api_key: KeyOpt = None, namespace: NamespaceOpt = None) -> None:
    _conn["url"], _conn["api_key"], _conn["namespace"] = url, api_key, namespace


def client() -> Client:
    namespace = _conn["namespace"] or os.environ.get("HANGAR_NAMESPACE") or None
    return Client(*client_config(_conn["url"], _conn["api_key"]), namespace=namespace)


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to bind [env HANGAR_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env HANGAR_PORT].")] = None,
    home: Annotated[Path | None, typer.Option(help="State folder [env HANGAR_HOME].")] = None,
    processes: ProcessesOpt = None,
) -> None:
    """Start Hangar in the foreground: gateway and workers, state in a SQLite file."""
    from hangar.gateway.server import serve

    serve(_settings(host=host, port=port, home=home, processes=processes), embedded=True)


def _settings(**given: Any) -> Any:
    """Settings from the environment, with the options given on the command line."""
    from hangar.config import Settings

    return Settings(**{name: value for name, value in given.items() if value})


@app.command()
def gateway(
    host: Annotated[str | None, typer.Option(help="Address to bind [env HANGAR_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env HANGAR_PORT].")] = None,
    processes: ProcessesOpt = None,
) -> None:
    """The HTTP gateway alone (no runs executed): scale it apart from `hangar worker`."""
    from hangar.gateway.server import serve

    serve(_settings(host=host, port=port, processes=processes), workers=0)


@app.command()
def worker(
    slots: Annotated[
        int | None, typer.Option(help="Runs executed at once [env HANGAR_WORKERS].")
    ] = None,
) -> None:
    """A worker process: takes queued runs from the shared store (PostgreSQL for more
    than one machine); stops cleanly on SIGTERM."""
    from hangar.gateway.server import work

    work(_settings(workers=slots))


@app.command()
def apply(
    files: Annotated[
        list[Path], typer.Option("--filename", "-f", help="A manifest file or folder.")
    ],
) -> None:
    """Create or update the resources in files or folders (all valid, or none applied)."""
    from hangar.spec import load_path

    documents: list[dict[str, Any]] = []
    for path in files:
        for resource in load_path(path):
            documents.append(resource.model_dump(mode="json", by_alias=True, exclude_none=True))
    result = client().request("POST", "/v1/apply", json={"documents": documents})
    for item in result["results"]:
        console.print(
            f"{item['kind'].lower()}/{item['name']} {item['outcome']} "
            f"[dim](generation {item['generation']})[/]"
        )
        for warning in item.get("warnings", []):
            err_console.print(f"  warning: {warning}", style="yellow")


@app.command()
def get(
    kind: Annotated[str, typer.Argument(help="agents, models, sandboxtemplates, mcpservers")],
    name: Annotated[str | None, typer.Argument()] = None,
    output: OutputOpt = "table",
) -> None:
    """List resources of a kind, or show one."""
    c = client()
    if name:
        item = c.request("GET", f"/v1/resources/{kind}/{name}")
        dump(item, "yaml" if output == "table" else output)
        return
    result = c.request("GET", f"/v1/resources/{kind}")
    if output == "table":
        if not result["items"]:
            err_console.print(f"No {result['kind']} resources found.")
            return
        console.print(resource_table(result["kind"], result["items"]))
    else:
        dump(result["items"], output)


@app.command()
def describe(kind: str, name: str) -> None:
    """Show a resource with its version history."""
    c = client()
    item = c.request("GET", f"/v1/resources/{kind}/{name}")
    versions = c.request("GET", f"/v1/resources/{kind}/{name}/versions")["versions"]
    dump(item, "yaml")
    console.print("\n[bold]Versions[/]")
    for version in versions:
        console.print(f"  generation {version['generation']}  {version['createdAt']}")


@app.command()
def delete(kind: str, name: str) -> None:
    """Delete a resource (its versions stay, so past runs still resolve)."""
    result = client().request("DELETE", f"/v1/resources/{kind}/{name}")
    console.print(f"{result['kind'].lower()}/{result['name']} deleted")


def _print_stream(c: Client, path: str, body: dict[str, Any]) -> str | None:
    run_id: str | None = None
    status: str | None = None
    for _event, data in c.sse("POST", path, json=body):
        item = json.loads(data)
        event = parse(item["type"], item["data"])
        if isinstance(event, Delta):
            console.out(event.text, end="", highlight=False)
        elif isinstance(event, ToolCalled):
            console.print(f"\n[dim]→ {event.name}({event.arguments})[/]")
        elif isinstance(event, ToolResult):
            console.print(f"[dim]← {event.content[:200]}[/]")
        elif isinstance(event, RunError):
            err_console.print(f"\n[red]error\\[{escape(event.code)}][/]: {escape(event.message)}")
        elif isinstance(event, RunFinished):
            status = event.status
    console.print()
    if status != "succeeded":
        raise typer.Exit(1)
    return run_id


@app.command()
def run(
    agent: str,
    message: str,
    stream: Annotated[bool, typer.Option("--stream", help="Print the answer as it comes.")] = False,
    output: Annotated[str, typer.Option("--output", "-o", help="text or json.")] = "text",
    session: Annotated[
        str | None, typer.Option("--session", help="A session's next turn (it sees the others).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="The end user it serves (their memory).")
    ] = None,
) -> None:
    """Run an agent on one message and print its answer."""
    c = client()
    path = f"/v1/agents/{agent}/runs"
    body: dict[str, Any] = {"input": message}
    if session:
        body["session"] = session
    if user:
        body["user"] = user
    if stream:
        _print_stream(c, path, {**body, "stream": True})
        return
    result = c.request("POST", path, json=body)
    if output == "json":
        dump(result, "json")
    elif result["status"] == "succeeded":
        # soft_wrap: the answer as the agent wrote it, with no line breaks added at the
        # console's width (a piped answer must equal the stored one).
        console.print(
            (result.get("output") or {}).get("text", ""),
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if result["status"] != "succeeded":
        error = result.get("error") or {}
        err_console.print(
            f"[bold red]error\\[{escape(str(error.get('code', result.get('reason'))))}][/]: "
            f"{escape(str(error.get('message', result['status'])))}"
        )
        err_console.print(f"  hint: inspect it with `hangar runs show {result['id']}`", style="dim")
        raise typer.Exit(1)


@app.command()
def chat(agent: str) -> None:
    """Talk with an agent; the conversation stays in this session. Ctrl-D ends it."""
    c = client()
    messages: list[dict[str, Any]] = []
    while True:
        try:
            line = console.input("[bold]you> [/]")
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        console.print(f"[bold]{agent}> [/]", end="")
        answer: list[str] = []
        for _event, data in c.sse(
            "POST",
            "/v1/chat/completions",
            json={"model": agent, "messages": messages, "stream": True},
        ):
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise HangarError(chunk["error"]["message"])
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content") or ""
                answer.append(text)
                console.out(text, end="", highlight=False)
        console.print()
        messages.append({"role": "assistant", "content": "".join(answer)})


@sessions_app.command("create")
def sessions_create(agent: str) -> None:
    """Open a session with an agent; prints its id (for `hangar run --session`)."""
    console.print(client().request("POST", "/v1/sessions", json={"agent": agent})["id"])


@sessions_app.command("list")
def sessions_list(
    agent: Annotated[str | None, typer.Option(help="Only sessions of this agent.")] = None,
    output: OutputOpt = "table",
) -> None:
    """The sessions, most recently active first."""
    params = {"agent": agent} if agent else {}
    items = client().request("GET", "/v1/sessions", params=params)["items"]
    if output != "table":
        dump(items, output)
        return
    console.print(sessions_table(items))


@sessions_app.command("show")
def sessions_show(session_id: str, output: OutputOpt = "table") -> None:
    """A session's conversation, turn by turn."""
    found = client().request("GET", f"/v1/sessions/{session_id}")
    if output != "table":
        dump(found, output)
        return
    console.print(conversation_view(found))


@sessions_app.command("delete")
def sessions_delete(session_id: str) -> None:
    """Delete a session with its runs and their events."""
    client().request("DELETE", f"/v1/sessions/{session_id}")
    console.print(f"session {session_id} deleted")


@runs_app.command("list")
def runs_list(
    agent: Annotated[str | None, typer.Option(help="Only runs of this agent.")] = None,
    limit: int = 20,
) -> None:
    """The latest runs."""
    params: dict[str, Any] = {"limit": limit}
    if agent:
        params["agent"] = agent
    console.print(runs_table(client().request("GET", "/v1/runs", params=params)["items"]))


@runs_app.command("show")
def runs_show(
    run_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="Export run and events as JSON.")] = False,
    spans: Annotated[
        bool, typer.Option("--trace", help="Show the run's OpenTelemetry trace (spans).")
    ] = False,
) -> None:
    """The decision path of a run: steps, model and tool calls, tokens, durations."""
    c = client()
    if spans:
        stored = c.request("GET", f"/v1/runs/{run_id}/trace")
        if as_json:
            dump(stored, "json")
        else:
            console.print(span_tree(stored["spans"]))
        return
    trace = _trace(c, run_id)
    if as_json:
        dump(trace, "json")
    else:
        console.print(run_tree(trace["run"], trace["events"], trace["children"]))


def _trace(c: Client, run_id: str) -> dict[str, Any]:
    """A run, its events, and the same for each agent it called as a tool."""
    run_data = c.request("GET", f"/v1/runs/{run_id}")
    events = c.request("GET", f"/v1/runs/{run_id}/events")["items"]
    called = [parse(e["type"], e["data"]) for e in events]
    children = {
        e.child_run: _trace(c, e.child_run)
        for e in called
        if isinstance(e, ToolResult) and e.child_run
    }
    return {"run": run_data, "events": events, "children": children}


@app.command()
def approve(
    run_id: str,
    deny: Annotated[bool, typer.Option("--deny", help="Refuse instead of approving.")] = False,
    call: Annotated[str | None, typer.Option(help="One held tool call (default: all).")] = None,
    comment: Annotated[str, typer.Option(help="Why; a denial shows it to the model.")] = "",
) -> None:
    """Approve (or --deny) the tool calls a run waits on; the run then goes on."""
    c = client()
    pending = c.request("GET", f"/v1/runs/{run_id}/approvals")["items"]
    for item in pending:
        if call is None or item["id"] == call:
            console.print(
                f"{'deny' if deny else 'approve'} {item['name']} {item['arguments']} "
                f"[dim]({item['id']}, held by {item['rule']})[/]",
                highlight=False,
            )
    body: dict[str, Any] = {"comment": comment}
    if call:
        body["callId"] = call
    result = c.request("POST", f"/v1/runs/{run_id}/{'deny' if deny else 'approve'}", json=body)
    console.print(f"run {result['id']} {result['status']}")


@runs_app.command("cancel")
def runs_cancel(run_id: str) -> None:
    """Cancel a queued or running run."""
    result = client().request("POST", f"/v1/runs/{run_id}/cancel")
    console.print(f"run {result['id']} {result['status']}")


@secret_app.command("set")
def secret_set(
    name: Annotated[str, typer.Argument(help="The Secret's name.")],
    values: Annotated[
        list[str], typer.Argument(help="KEY=VALUE, or KEY=@FILE to read the value from a file.")
    ],
) -> None:
    """Create or replace a Secret without writing its values into a manifest."""
    data: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE")
        data[key] = Path(value[1:]).read_text().rstrip("\n") if value.startswith("@") else value
    document = {
        "apiVersion": "hangar.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"data": data},
    }
    result = client().request("POST", "/v1/apply", json={"documents": [document]})
    item = result["results"][0]
    console.print(f"secret/{name} {item['outcome']} [dim](keys: {', '.join(sorted(data))})[/]")


@app.command()
def audit(
    run: Annotated[str | None, typer.Option(help="Only calls of this run.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only calls of this agent.")] = None,
    limit: int = 50,
    output: OutputOpt = "table",
) -> None:
    """The audit log of tool calls, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if run:
        params["run"] = run
    if agent:
        params["agent"] = agent
    items = client().request("GET", "/v1/audit/tool-calls", params=params)["items"]
    if output != "table":
        dump(items, output)
        return
    for entry in items:
        console.print(
            f"{entry['createdAt'][:19]}  {entry['agent']:<16} {entry['run']}  "
            f"{entry['tool']:<32} {entry['outcome']:<15} {entry['durationMs']:>8.1f} ms  "
            f"args {entry['argumentsSha256'][:12]}",
            highlight=False,
        )


@app.command()
def usage(
    by: Annotated[str, typer.Option(help="Group by: namespace, agent, model, run, day.")] = "agent",
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or csv.")] = "table",
) -> None:
    """Tokens and cost from the usage ledger, summed by agent, model, run or day."""
    params: dict[str, Any] = {"by": by}
    for name, value in (("since", since), ("until", until), ("agent", agent)):
        if value:
            params[name] = value
    c = client()
    if output == "csv":
        params["format"] = "csv"
        console.out(c.request_text("GET", "/v1/usage", params=params), end="", highlight=False)
        return
    result = c.request("GET", "/v1/usage", params=params)
    if output == "json":
        dump(result["items"], "json")
        return
    console.print(usage_table(result["groupBy"], result["items"]))


@sandbox_app.command("exec")
def sandbox_exec(
    template: Annotated[str, typer.Argument(help="A SandboxTemplate, or 'default'.")],
    command: Annotated[list[str], typer.Argument(help="The command, after --.")],
    backend: Annotated[
        str | None, typer.Option(help="Use a backend instead of a template.")
    ] = None,
    python: Annotated[bool, typer.Option("--python", help="COMMAND is Python code.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds before it is stopped.")] = None,
) -> None:
    """Run one command in a fresh sandbox, print its output, and remove the sandbox.

    hangar sandbox exec default -- ls -la
    hangar sandbox exec default --python -- "print(2 ** 10)"
    """
    import shlex

    c = client()
    body: dict[str, Any] = {"backend": backend} if backend else {}
    if template != "default" and not backend:
        body["template"] = template
    created = c.request("POST", "/v1/sandboxes", json=body)
    text = " ".join(command) if python else shlex.join(command)
    try:
        request: dict[str, Any] = {"code": text} if python else {"command": text}
        if timeout:
            request["timeout"] = timeout
        result = c.request("POST", f"/v1/sandboxes/{created['id']}/exec", json=request)
    finally:
        c.request("DELETE", f"/v1/sandboxes/{created['id']}")
    sys.stdout.write(result["stdout"])
    if result.get("value") is not None:
        sys.stdout.write(result["value"] + "\n")
    sys.stderr.write(result["stderr"])
    if result.get("traceback"):
        sys.stderr.write(result["traceback"])
    if result["status"] not in ("ok", "error") or (result["status"] == "error" and python):
        err_console.print(
            f"[bold red]sandbox\\[{escape(result['status'])}][/]: {escape(result['error'] or '')}"
        )
    code = result.get("exit_code")
    raise typer.Exit(code if isinstance(code, int) else (0 if result["status"] == "ok" else 1))


@sandbox_app.command("doctor")
def sandbox_doctor() -> None:
    """Which sandbox backends work on the server's host, and how to get the others."""
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("BACKEND", "WORKS", "DETAIL", "HINT"):
        table.add_column(column)
    for item in client().request("GET", "/v1/sandboxes/backends")["items"]:
        features = ", ".join(k for k, v in item["features"].items() if v)
        detail = item["detail"] + (f" ({features})" if features else "")
        table.add_row(
            item["backend"], "yes" if item["available"] else "no", detail, item["hint"] or ""
        )
    console.print(table)


@app.command()
def schema(kind: str) -> None:
    """Print the JSON Schema of a kind (works offline)."""
    from hangar.spec import json_schema

    console.print_json(json.dumps(json_schema(kind)))


@app.command()
def crds(
    folder: Annotated[Path, typer.Argument(help="Where to write them, one file per kind.")] = Path(
        "deploy/crds"
    ),
) -> None:
    """Write the Kubernetes CustomResourceDefinitions of every kind (works offline)."""
    from hangar.spec.crds import write_crds

    for path in write_crds(folder):
        console.print(str(path))


def main() -> None:
    try:
        app()
    except HangarError as exc:
        print_error(exc)
        sys.exit(1)

"""How the CLI shows things: tables, the step tree of a run, errors."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from hangar.errors import HangarError
from hangar.runtime.events import (
    ApprovalDecided,
    ApprovalRequested,
    Final,
    ModelRequested,
    ModelResponded,
    ModelWaiting,
    RunError,
    ToolResult,
    parse,
)

console = Console()
err_console = Console(stderr=True)


def print_error(exc: HangarError) -> None:
    code = getattr(exc, "remote_code", exc.code)
    err_console.print(
        f"[bold red]error\\[{escape(code)}][/]: {escape(exc.message)}", highlight=False
    )
    problems = exc.details.get("problems") or []
    for problem in problems[1:]:
        where = problem.get("source") or problem.get("field") or ""
        if "document" in problem:
            where += f", document {problem['document']}"
        if problem.get("path"):
            where += f", at {problem['path']}"
        err_console.print(f"  {where}: {problem.get('message')}", highlight=False, markup=False)
    if exc.hint:
        err_console.print(f"  hint: {exc.hint}", style="dim", highlight=False, markup=False)


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    delta = datetime.now().astimezone() - datetime.fromisoformat(stamp)
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def resource_table(kind: str, items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("NAME", "GENERATION", "DETAIL", "AGE"):
        table.add_column(column)
    for item in items:
        spec = item.get("spec", {})
        if kind == "Agent":
            detail = f"model={spec.get('model')} tools={len(spec.get('tools', []))}"
        elif kind == "Model":
            detail = f"provider={spec.get('provider')} {spec.get('model') or ''}".strip()
        elif kind == "MCPServer":
            status = item.get("status", {})
            detail = (
                f"{next((t for t in ('stdio', 'http', 'catalog') if spec.get(t)), '?')} "
                f"{status.get('state', '?')} "
                f"tools={status.get('tools', '?')} restarts={status.get('restarts', 0)}"
            )
            if status.get("error"):
                detail += f"\n{status['error'][:200]}"
        elif kind == "Secret":
            detail = f"keys={','.join(sorted(spec.get('data', {})))}"
        else:
            detail = ""
        meta = item["metadata"]
        table.add_row(
            meta["name"], str(meta.get("generation")), detail, _age(meta.get("createdAt"))
        )
    return table


def usage_table(groups: list[str], items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in [*(g.upper() for g in groups), "CALLS", "INPUT", "CACHED", "OUTPUT", "COST $"]:
        table.add_column(column, justify="left" if column.lower() in groups else "right")
    for row in items:
        table.add_row(
            *(str(row[g]) for g in groups),
            str(row["calls"]),
            str(row["input_tokens"]),
            str(row["cached_input_tokens"]),
            str(row["output_tokens"]),
            f"{row['cost']:.6f}",
        )
    return table


def runs_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "AGENT", "STATUS", "REASON", "TOKENS", "AGE"):
        table.add_column(column)
    for run in items:
        table.add_row(
            run["id"],
            f"{run['agent']}@{run['agent_generation']}",
            run["status"],
            run.get("reason") or "",
            str(run["usage"]["total_tokens"]),
            _age(run["created_at"]),
        )
    return table


def sessions_table(items: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for column in ("ID", "AGENT", "ACTIVE", "AGE"):
        table.add_column(column)
    for session in items:
        table.add_row(
            session["id"],
            session["agent"],
            _age(session["updated_at"]),
            _age(session["created_at"]),
        )
    return table


def conversation_view(session: dict[str, Any]) -> Tree:
    """A session's messages as the agent sees them, one branch per message."""
    tree = Tree(f"[bold]session {escape(session['id'])}[/] with {escape(session['agent'])}")
    for message in session["messages"]:
        content = message.get("content")
        text = content if isinstance(content, str) else json.dumps(content)
        for call in message.get("tool_calls") or []:
            text += f" → {call['function']['name']}({call['function']['arguments']})"
        tree.add(f"[bold]{escape(message['role'])}[/]: {escape(text or '')}")
    if not session["messages"]:
        tree.add("[dim]no turns yet[/]")
    return tree


def _clip(text: str, size: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"


def run_tree(
    run: dict[str, Any],
    events: list[dict[str, Any]],
    children: dict[str, dict[str, Any]] | None = None,
) -> Tree:
    """The decision path: steps with their model call and tool calls, tokens and times;
    an agent called as a tool shows its own run nested under the call
    (``children``: child run id to ``{"run": …, "events": …, "children": …}``)."""
    children = children or {}
    usage = run["usage"]
    duration = run.get("duration_seconds")
    head = (
        f"[bold]{run['id']}[/] {run['agent']}@{run['agent_generation']} "
        f"[{'green' if run['status'] == 'succeeded' else 'red'}]{run['status']}[/]"
        + (f" ({run['reason']})" if run.get("reason") else "")
        + f"  tokens {usage['input_tokens']}→{usage['output_tokens']}"
        + (f"  cost ${usage['cost']:.6f}" if usage.get("cost") else "")
        + (f"  {duration:.3f}s" if duration is not None else "")
    )
    timing = run.get("timing")
    if timing:
        head += (
            f"\n[dim]time: model {timing['model_ms']:.1f} ms · tools {timing['tools_ms']:.1f} ms"
            f" · hangar {timing['hangar_ms']:.1f} ms"
            + (f" · queued {timing['queued_ms']:.1f} ms" if "queued_ms" in timing else "")
            + "[/]"
        )
    tree = Tree(head)
    steps: dict[int, Tree] = {}
    times = _step_times(events)
    for stored in events:
        event = parse(stored["type"], stored["data"])
        if isinstance(event, ModelRequested):
            steps[event.step] = tree.add(f"step {event.step}" + times.get(event.step, ""))
        elif isinstance(event, ModelResponded):
            node = steps.get(event.step, tree)
            u, calls = event.usage, event.tool_calls
            what = f"{len(calls)} tool call(s)" if calls else repr(_clip(event.text, 60))
            node.add(
                f"model {event.model}: {what}  [dim]tokens {u.input_tokens}→"
                f"{u.output_tokens}  {event.duration_ms:.1f} ms[/]"
            )
        elif isinstance(event, ModelWaiting):
            node = steps[max(steps)] if steps else tree
            how_long = "" if event.seconds is None else f" ({event.seconds:.1f} s)"
            node.add(f"[yellow]waiting on model {event.model}[/]: {event.reason}{how_long}")
        elif isinstance(event, ToolResult):
            node = steps.get(event.step, tree)
            style = "red" if event.is_error else "cyan"
            leaf = node.add(
                f"[{style}]tool {event.name}[/] → {_clip(event.content, 60)!r}  "
                f"[dim]{event.duration_ms:.1f} ms[/]"
            )
            child = children.get(event.child_run or "")
            if child is not None:
                leaf.add(run_tree(child["run"], child["events"], child.get("children")))
        elif isinstance(event, ApprovalRequested):
            for call in event.calls:
                tree.add(f"[yellow]waiting for approval[/]: {call.name}  [dim]{call.rule}[/]")
        elif isinstance(event, ApprovalDecided):
            verb = "approved" if event.approved else "denied"
            note = f": {event.comment}" if event.comment else ""
            tree.add(f"[yellow]{verb}[/] {event.name} by {event.by or '?'}{note}")
        elif isinstance(event, RunError):
            tree.add(f"[red]error {event.code}[/]: {event.message}")
        elif isinstance(event, Final) and event.text:
            tree.add(f"[green]answer[/]: {_clip(event.text, 200)}")
    return tree


def _step_times(events: list[dict[str, Any]]) -> dict[int, str]:
    """Per step: its wall time (from its model request to the next step's) split into
    the model, its tools (the longest, as a step's calls run side by side) and Hangar."""
    starts: dict[int, datetime] = {}
    model: dict[int, float] = {}
    tools: dict[int, float] = {}
    last: datetime | None = None
    for stored in events:
        at = datetime.fromisoformat(stored["created_at"])
        last = at
        event = parse(stored["type"], stored["data"])
        if isinstance(event, ModelRequested) and event.step not in starts:
            starts[event.step] = at
        elif isinstance(event, ModelResponded):
            model[event.step] = event.duration_ms
        elif isinstance(event, ToolResult):
            tools[event.step] = max(tools.get(event.step, 0.0), event.duration_ms)
    ordered = sorted(starts)
    out: dict[int, str] = {}
    for i, step in enumerate(ordered):
        end = starts[ordered[i + 1]] if i + 1 < len(ordered) else last
        if end is None:
            continue
        wall = (end - starts[step]).total_seconds() * 1000
        own = max(wall - model.get(step, 0.0) - tools.get(step, 0.0), 0.0)
        out[step] = (
            f"  [dim]{wall:.1f} ms: model {model.get(step, 0.0):.1f} · tools "
            f"{tools.get(step, 0.0):.1f} · hangar {own:.1f}[/]"
        )
    return out


def span_tree(spans: list[dict[str, Any]]) -> Tree:
    """A stored trace as a tree: each span with its duration and the attributes that
    say most (tokens, tool outcome, status)."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    ids = {span["spanId"] for span in spans}
    for span in spans:
        parent = span["parentSpanId"] if span["parentSpanId"] in ids else None
        by_parent.setdefault(parent, []).append(span)
    root = Tree(f"[bold]trace {spans[0]['traceId'] if spans else '(none)'}[/]")

    def label(span: dict[str, Any]) -> str:
        attrs = span["attributes"]
        notes = []
        if "gen_ai.usage.input_tokens" in attrs:
            notes.append(
                f"tokens {attrs['gen_ai.usage.input_tokens']}→"
                f"{attrs.get('gen_ai.usage.output_tokens', 0)}"
            )
        if "hangar.tool.outcome" in attrs:
            notes.append(attrs["hangar.tool.outcome"])
        style = "red" if span["status"] == "error" else "cyan"
        extra = f"  {' '.join(notes)}" if notes else ""
        return f"[{style}]{span['name']}[/]  [dim]{span['durationMs']:.1f} ms[/]{extra}"

    def add(node: Tree, parent: str | None) -> None:
        for span in sorted(by_parent.get(parent, []), key=lambda s: s["startTimeUnixNano"]):
            add(node.add(label(span)), span["spanId"])

    add(root, None)
    return root


def dump(value: Any, output: str) -> None:
    if output == "json":
        console.print_json(json.dumps(value))
    else:
        import yaml

        console.print(
            yaml.safe_dump(value, sort_keys=False).rstrip(), highlight=False, markup=False
        )

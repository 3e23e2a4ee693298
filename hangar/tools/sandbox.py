"""Built-in tools that act in the run's sandbox: one stateful session per run, so a
variable set or a file written in one step is there in the next."""

from __future__ import annotations

import json

from hangar.errors import ToolError
from hangar.sandbox.base import ExecResult, Sandbox
from hangar.tools.base import ToolContext
from hangar.tools.function import FunctionTool

MAX_FILE_CHARS = 100_000


async def _sandbox(ctx: ToolContext) -> Sandbox:
    if ctx.sandbox is None:
        raise ToolError("this run has no sandbox", hint="give the agent a sandbox tool")
    return await ctx.sandbox()


def _report(result: ExecResult) -> str:
    data = {k: v for k, v in result.to_dict().items() if v not in (None, "", [])}
    data.pop("duration_ms", None)
    return json.dumps(data)


async def run_python(code: str, ctx: ToolContext) -> str:
    """Run Python code in a persistent sandboxed session (variables survive between
    calls). Returns stdout, stderr, the value of the last expression, errors and the
    files the code wrote. Files live in the working directory /workspace."""
    return _report(await (await _sandbox(ctx)).run_python(code))


async def run_shell(command: str, ctx: ToolContext) -> str:
    """Run a shell command in the sandbox's /workspace and return its output and exit code."""
    return _report(await (await _sandbox(ctx)).run_shell(command))


async def read_file(path: str, ctx: ToolContext) -> str:
    """Read a text file from the sandbox workspace."""
    data = await (await _sandbox(ctx)).read_file(path)
    text = data.decode("utf-8", errors="replace")
    if len(text) > MAX_FILE_CHARS:
        text = text[:MAX_FILE_CHARS] + f"\n[truncated at {MAX_FILE_CHARS} characters]"
    return text


async def write_file(path: str, content: str, ctx: ToolContext) -> str:
    """Write a text file into the sandbox workspace, creating folders as needed."""
    info = await (await _sandbox(ctx)).write_file(path, content.encode())
    return json.dumps({"path": info.path, "size": info.size})


SANDBOX_TOOLS = {
    "run_python": FunctionTool(run_python),
    "run_shell": FunctionTool(run_shell),
    "read_file": FunctionTool(read_file, idempotent=True),
    "write_file": FunctionTool(write_file, idempotent=True),
}

"""An MCP server in the standard library alone, for a namespace's sandboxed stdio
servers: a sandbox has the host's /usr python3 and nothing installed, so the tests
pass this file's text as ``python3 -c``. It speaks the initialize handshake over
JSON lines and offers three tools: ``echo``, ``whoami`` (what the process can see of
the machine, to prove it is sandboxed) and ``fetch`` (a URL through the sandbox's
proxy). Anything else is "method not found"."""

import json
import os
import sys


def whoami():
    seen = {
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "env": sorted(os.environ),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    }
    for path in ("/etc/passwd", "/root", os.environ.get("HANGAR_PROBE", "/nonexistent")):
        seen[path] = os.path.exists(path)
    return json.dumps(seen)


def fetch(url):
    import urllib.request

    try:
        return urllib.request.urlopen(url, timeout=10).read().decode()
    except Exception as exc:
        return f"refused: {exc}"


TOOLS = {
    "echo": ("Return the text.", {"text": {"type": "string"}}, lambda a: f"echo: {a['text']}"),
    "whoami": ("What this process sees.", {}, lambda a: whoami()),
    "fetch": ("GET a URL.", {"url": {"type": "string"}}, lambda a: fetch(a["url"])),
}


def answer(request):
    method, params = request.get("method"), request.get("params") or {}
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "minimal", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {
            "tools": [
                {
                    "name": name,
                    "description": about,
                    "inputSchema": {"type": "object", "properties": props},
                }
                for name, (about, props, _) in TOOLS.items()
            ]
        }
    if method == "tools/call" and params.get("name") in TOOLS:
        text = TOOLS[params["name"]][2](params.get("arguments") or {})
        return {"content": [{"type": "text", "text": text}], "isError": False}
    raise LookupError(method)


sys.stderr.write("minimal MCP server ready\n")
for line in sys.stdin:
    request = json.loads(line)
    if "id" not in request:
        continue  # a notification
    try:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": answer(request)}
    except LookupError as exc:
        error = {"code": -32601, "message": f"method not found: {exc}"}
        reply = {"jsonrpc": "2.0", "id": request["id"], "error": error}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()

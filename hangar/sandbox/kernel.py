"""The kernel: a stateful Python session that runs *inside* a sandbox.

It is started by a process backend (bwrap, gVisor) with the sandbox's own
``python3`` and uses the standard library only. Requests arrive as JSON lines on
standard input; answers leave as JSON lines on file descriptor 3, so nothing the
user's code prints, even from C or a child process, can corrupt the protocol.

Cells run in one namespace that persists, like a notebook kernel: the value of
the last expression is returned, exceptions come back with their traceback, and
the files a cell created or changed in the workspace are listed. Limits that the
process itself can enforce are set here (address space, file size, wall and CPU
time per cell, output size); process counts are left to the host (cgroups).
"""

# Only modules built into the interpreter at start: ``signal`` and ``json`` would
# pull in enum and re, more than the whole interpreter's own start (see codec).
import _thread
import io
import os
import sys
import time

try:
    import _signal as signal
except ImportError:  # an interpreter without signals
    signal = None

# Imported when first needed or when the kernel is idle (see warm_up): a cold
# sandbox answers its first call without paying for what that call does not use.
ast = base64 = subprocess = traceback = None

try:  # absent under WASI, where the wasm backend loads this module into its guest
    import resource
except ImportError:
    resource = None

_TIMERS = hasattr(signal, "setitimer")


def codec():
    """``loads`` and ``dumps`` for the protocol's JSON lines, from CPython's C
    accelerator directly: importing ``json`` costs more than the interpreter's start.
    Any interpreter whose accelerator differs gets ``json`` itself."""
    try:
        import _json

        class Options:
            strict = True
            object_hook = object_pairs_hook = None
            parse_float = parse_constant = float
            parse_int = int

        def unencodable(value):
            raise TypeError(f"{type(value).__name__} is not JSON serializable")

        scan = _json.make_scanner(Options())
        encode = _json.make_encoder(
            None, unencodable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True
        )

        def loads(text):
            return scan(text.strip(), 0)[0]

        def dumps(value):
            return "".join(encode(value, 0))

        sample = {"a": [1, 2.5, 'é\n"', None, True, {"b": -3}]}
        if loads(dumps(sample)) == sample and dumps(sample).isascii():
            return loads, dumps
    except Exception:
        pass
    import json

    return json.loads, json.dumps


loads, dumps = codec()

WORKSPACE = os.environ.get("HANGAR_WORKSPACE", "/workspace")
OUTPUT_BYTES = int(os.environ.get("HANGAR_OUTPUT_BYTES", "1000000"))
MEMORY_BYTES = int(os.environ.get("HANGAR_MEMORY_BYTES", "0"))
FILE_BYTES = int(os.environ.get("HANGAR_FILE_BYTES", "0"))
PROCESSES = int(os.environ.get("HANGAR_PROCESSES", "0"))
BACKGROUND = os.environ.get("HANGAR_BACKGROUND", "kill")
VALUE_CHARS = 10_000
EGRESS_DENIED = "Forbidden by Hangar egress policy"  # egress.DENIED_REASON


class CellTimeout(BaseException):
    """Raised in the cell when its wall time is up; not an Exception, so user code
    that catches ``Exception`` cannot swallow it."""


class CellCpuLimit(BaseException):
    pass


STRAY_SECONDS = 0.5
"""How long the kernel waits for the processes it killed after a call to be gone."""
SHELL_DRAIN_SECONDS = 0.1
"""After a shell command exits, how long its output pipes are still read: a process
it left in the background holds them open, and must not hold the call too."""
STREAM_INTERVAL = 0.05
STREAM_CHUNK = 4096

# Set while a request that asked for streaming runs: sends output as it comes.
_emit = None
# Where no flusher thread can run (WASI), writes flush themselves: a finished line
# leaves at once unless the last chunk left less than STREAM_INTERVAL ago.
_flush_on_newline = False
_live = []  # the Capped streams of the running request, for the flusher thread


class Capped(io.TextIOBase):
    """A stream that keeps at most ``limit`` bytes and remembers it dropped the rest.
    When the request streams, kept output also leaves in chunks as it is written."""

    def __init__(self, limit, name="stdout"):
        self.limit = limit
        self.name = name
        self.parts = []
        self.size = 0
        self.truncated = False
        self.pending = []
        self.pending_size = 0
        self.flushed_at = float("-inf")  # never: a first line leaves at once

    def _stream(self, text):
        if _emit is None or not text:
            return
        if not _live or self not in _live:
            _live.append(self)
        self.pending.append(text)
        self.pending_size += len(text)
        if self.pending_size >= STREAM_CHUNK or (
            _flush_on_newline
            and "\n" in text
            and time.monotonic() - self.flushed_at >= STREAM_INTERVAL
        ):
            self.flush_stream()

    def flush_stream(self):
        emit = _emit
        if emit is not None and self.pending:
            chunk, self.pending, self.pending_size = "".join(self.pending), [], 0
            self.flushed_at = time.monotonic()
            emit(self.name, chunk)

    def writable(self):
        return True

    def write(self, text):
        data = str(text)
        room = self.limit - self.size
        if room <= 0:
            self.truncated = self.truncated or bool(data)
            return len(data)
        encoded = data.encode("utf-8", "replace")
        if len(encoded) > room:
            encoded = encoded[:room]
            self.truncated = True
        kept = encoded.decode("utf-8", "ignore")
        self.parts.append(kept)
        self.size += len(encoded)
        self._stream(kept)
        return len(data)

    def getvalue(self):
        return "".join(self.parts)


def _raise_timeout(signum, frame):
    raise CellTimeout()


def _raise_cpu(signum, frame):
    raise CellCpuLimit()


def set_limits():
    if resource is None:
        return
    if MEMORY_BYTES:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    if FILE_BYTES:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGALRM, _raise_timeout)
    signal.signal(signal.SIGPROF, _raise_cpu)
    # Writes past RLIMIT_FSIZE must fail with an error, not kill the kernel.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def snapshot():
    found = {}
    for root, _dirs, files in os.walk(WORKSPACE):
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            found[os.path.relpath(path, WORKSPACE)] = (info.st_mtime_ns, info.st_size)
    return found


def changed(before, after):
    return sorted(path for path, stamp in after.items() if before.get(path) != stamp)


# Errors that mean "the sandbox does not allow this", not "your code has a bug".
_REFUSALS = {
    1,
    13,
    30,
    101,
    111,
    113,
    97,
}  # EPERM EACCES EROFS ENETUNREACH ECONNREFUSED EHOSTUNREACH EAFNOSUPPORT


def refused(exc):
    if isinstance(exc, PermissionError):
        return True
    if isinstance(exc, OSError) and exc.errno in _REFUSALS:
        return True
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)) and outside(exc.filename):
        return True
    if EGRESS_DENIED in str(exc):  # the host's egress proxy said no (HTTP 403)
        return True
    reason = getattr(exc, "reason", None)  # urllib wraps the socket error
    return isinstance(reason, OSError) and reason.errno in _REFUSALS


def outside(path):
    """Whether an absolute path lies outside what the sandbox offers for files."""
    if not isinstance(path, str) or not os.path.isabs(path):
        return False
    real = os.path.normpath(path)
    return not any(real == root or real.startswith(root + "/") for root in (WORKSPACE, "/tmp"))


def resolve(path):
    """A workspace path, or ValueError if ``path`` would leave the workspace."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValueError("a file path must be a non-empty string")
    joined = path if os.path.isabs(path) else os.path.join(WORKSPACE, path)
    real = os.path.realpath(joined)
    if os.path.commonpath([real, WORKSPACE]) != WORKSPACE or real == WORKSPACE:
        raise ValueError(f"{path!r} is outside the workspace")
    return real


def split_cell(code):
    """The cell's statements and its last expression (whose value the cell returns),
    compiled; either may be None. A cell that is one expression needs no parse tree."""
    global ast
    try:
        return None, compile(code, "<cell>", "eval")
    except SyntaxError:
        pass
    if ast is None:
        import ast
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = compile(ast.Expression(tree.body.pop().value), "<cell>", "eval")
    return compile(tree, "<cell>", "exec"), last


def run_cell(namespace, code, timeout, cpu_seconds):
    out, err = Capped(OUTPUT_BYTES, "stdout"), Capped(OUTPUT_BYTES, "stderr")
    before = snapshot()
    result = {"status": "ok", "value": None, "error": None, "traceback": None}
    try:
        statements, last = split_cell(code)
    except SyntaxError as exc:
        return {
            **result,
            "status": "error",
            "error": f"SyntaxError: {exc}",
            "stdout": "",
            "stderr": "",
        }
    if _TIMERS and timeout:
        signal.setitimer(signal.ITIMER_REAL, timeout)
    if _TIMERS and cpu_seconds:
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
    saved = sys.stdout, sys.stderr
    try:
        sys.stdout, sys.stderr = out, err
        if statements is not None:
            exec(statements, namespace)
        if last is not None:
            value = eval(last, namespace)
            if value is not None:
                namespace["_"] = value
                text = repr(value)
                if len(text) > VALUE_CHARS:
                    text = text[:VALUE_CHARS] + "…"
                result["value"] = text
    except CellTimeout:
        result.update(status="timeout", error=f"the cell ran longer than {timeout} s")
    except CellCpuLimit:
        result.update(status="timeout", error=f"the cell used more than {cpu_seconds} s of CPU")
    except MemoryError:
        result.update(status="oom", error="MemoryError: the cell ran out of memory")
    except BaseException as exc:
        warm_up()
        result.update(
            status="denied" if refused(exc) else "error",
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[1:]),
        )
    finally:
        sys.stdout, sys.stderr = saved
        if _TIMERS:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.setitimer(signal.ITIMER_PROF, 0)
    out.flush_stream()
    err.flush_stream()
    if result["status"] == "ok" and (out.truncated or err.truncated):
        result["status"] = "output_truncated"
    result.update(stdout=out.getvalue(), stderr=err.getvalue(), files=changed(before, snapshot()))
    return result


def warm_up():
    global ast, base64, subprocess, traceback
    if traceback is not None:
        return
    import ast
    import base64
    import traceback

    try:
        import subprocess
    except ImportError:  # WASI: no processes
        subprocess = None


def load(name):
    """A function of ``kernel_processes.py`` (mounted beside this file), read into this
    module the first time one of them is needed: what only some calls use costs the
    others nothing. The kernel runs with ``python -I``, whose path holds no folder of
    its own, so the file is read, not imported."""
    if name not in globals():
        path = os.path.join(os.path.dirname(__file__), "kernel_processes.py")
        with open(path) as source:
            exec(compile(source.read(), path, "exec"), globals())
    return globals()[name]


def kill_group(pid):
    try:  # noqa: SIM105 (contextlib is not imported at start, see the imports)
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def reap_strays():
    """Kill what a call left running (``cmd &``, a daemon, a child a cell started), unless
    the template keeps background processes for the session's later calls. The sandbox
    is its own pid namespace: ``kill(-1)`` reaches every process in it but its init
    (bwrap's) and this kernel; gVisor's kernel, where this kernel is the init, sends it
    nowhere, so what /proc still lists is killed one by one."""
    if BACKGROUND == "keep" or not hasattr(os, "fork"):
        return
    keep = {1, os.getpid(), os.getppid()}
    strays = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in keep]
    if not strays:
        return
    try:
        os.kill(-1, 9)
    except OSError:
        for pid in strays:
            try:  # noqa: SIM105 (contextlib is not imported at start)
                os.kill(pid, 9)
            except OSError:
                pass
    # Gone means reaped: ours by us (a killed process lingers as a zombie until its
    # parent waits), orphans by the sandbox's init. A moment at most.
    deadline = time.monotonic() + STRAY_SECONDS
    while time.monotonic() < deadline:
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass
        if not any(os.path.exists(f"/proc/{pid}") for pid in strays):
            return
        time.sleep(0.005)


def crowded():
    """Whether the sandbox is at its process limit: what a fork bomb leaves behind."""
    if not PROCESSES or not os.path.isdir("/proc"):
        return False
    alive = sum(1 for entry in os.listdir("/proc") if entry.isdigit())
    return alive >= PROCESSES * 3 // 4


def contained(reply):
    if crowded():
        reply.update(
            status="denied",
            error=f"the sandbox reached its limit of {PROCESSES} processes and is being killed",
            kill=True,
        )
    return reply


def handle(namespace, request):
    op = request.get("op")
    if op == "exec":
        reply = contained(
            run_cell(namespace, request["code"], request["timeout"], request.get("cpu"))
        )
        reap_strays()
        return reply
    if op == "shell":
        run_shell = load("run_shell")
        reply = contained(run_shell(request["cmd"], request["timeout"], request.get("cpu")))
        reap_strays()
        return reply
    if op == "ping":
        return {"status": "ok"}
    warm_up()
    if op == "warm":
        return {"status": "ok"}
    try:
        if op == "write":
            path = resolve(request["path"])
            if os.path.islink(path):
                raise ValueError(f"{request['path']!r} is a symbolic link")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = base64.b64decode(request["data"])
            with open(path, "wb") as handle_:
                handle_.write(data)
            return {"status": "ok", "path": os.path.relpath(path, WORKSPACE), "size": len(data)}
        if op == "read":
            path = resolve(request["path"])
            with open(path, "rb") as handle_:
                data = handle_.read(OUTPUT_BYTES * 64 + 1)
            return {"status": "ok", "data": base64.b64encode(data).decode()}
        if op == "list":
            return {"status": "ok", "files": [[p, s[1]] for p, s in sorted(snapshot().items())]}
    except ValueError as exc:
        return {"status": "denied", "error": str(exc)}
    except FileNotFoundError:
        return {"status": "error", "error": f"no such file: {request.get('path')!r}"}
    except OSError as exc:
        if exc.errno in (27, 28, 122):  # EFBIG, ENOSPC, EDQUOT
            return {"status": "denied", "error": f"the workspace is full: {exc.strerror}"}
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
    return {"status": "error", "error": f"unknown op {op!r}"}


def add_site_packages():
    """The kernel runs without ``site`` (python -S): the host's .pth hooks have no
    business in a sandbox, and skipping them halves Python's start. The system's
    package folders still go on the path, so numpy and pandas import as usual."""
    if "site" in sys.modules:
        return
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for folder in (
        f"{sys.prefix}/local/lib/{version}/dist-packages",
        f"{sys.prefix}/lib/python3/dist-packages",
        f"{sys.prefix}/lib/{version}/dist-packages",
        f"{sys.prefix}/lib/{version}/site-packages",
        f"{sys.prefix}/lib64/{version}/site-packages",
    ):
        if folder not in sys.path and os.path.isdir(folder):
            sys.path.append(folder)


def idle_warm_up(requests):
    """Warm up now if no request is waiting; otherwise serve it first (a cold start
    followed at once by a call), and warm up after it."""
    if traceback is not None:
        return
    import select

    if not select.select([requests], [], [], 0)[0]:
        warm_up()


def main():
    if sys.argv[1:2] == ["--exec"] and len(sys.argv) > 2:
        load("run_program")(sys.argv[2:])
    set_limits()
    if os.environ.get("HANGAR_EGRESS_SOCKET"):
        load("start_egress_relay")()
    reply_fd = os.environ.get("HANGAR_REPLY_FD", "3")
    if reply_fd == "stdout":
        # The runtime gives us only stdio (gVisor): answer on a private copy of stdout.
        reply_fd = str(os.dup(1))
    replies = os.fdopen(int(reply_fd), "w", buffering=1)
    # Output that bypasses sys.stdout (C code, inherited descriptors) goes nowhere:
    # it must neither mix with answers nor fill a pipe nobody reads.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    requests = os.fdopen(0, "r")
    # User code reads an empty stdin, never the protocol.
    sys.stdin = io.StringIO("")
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    os.chdir(WORKSPACE)
    add_site_packages()
    sys.path.insert(0, WORKSPACE)
    replies.write(dumps({"status": "ready", "pid": os.getpid()}) + "\n")
    write_lock = _thread.allocate_lock()

    def start_flusher():
        """Send pending output every STREAM_INTERVAL while the request runs, so a cell
        that prints and then works for a while shows its output at once. Released,
        the returned lock stops it."""
        running = _thread.allocate_lock()
        running.acquire()

        def loop():
            while not running.acquire(timeout=STREAM_INTERVAL):
                for stream in list(_live):
                    stream.flush_stream()

        _thread.start_new_thread(loop, ())
        return running

    global _emit
    for line in requests:
        request = None
        flusher = None
        try:
            request = loads(line)
            flusher = None
            if request.get("stream"):
                rid = request.get("id")

                def emit(stream, text, rid=rid):
                    line = dumps({"id": rid, "partial": True, "stream": stream, "text": text})
                    with write_lock:
                        replies.write(line + "\n")

                _emit = emit
                flusher = start_flusher()
            reply = handle(namespace, request)
        except MemoryError:
            reply = {"status": "oom", "error": "MemoryError: the kernel ran out of memory"}
        except Exception as exc:
            reply = {"status": "error", "error": f"kernel: {type(exc).__name__}: {exc}"}
        finally:
            if flusher is not None:
                flusher.release()
            for stream in _live:
                stream.flush_stream()
            _live.clear()
            _emit = None
        reply["id"] = request.get("id") if isinstance(request, dict) else None
        with write_lock:
            replies.write(dumps(reply) + "\n")
        idle_warm_up(requests)


if __name__ == "__main__":
    main()

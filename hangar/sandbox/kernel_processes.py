"""The kernel's work with other processes and sockets: a shell command, the program
mode, the egress relay. Read into the kernel's own module (``kernel.load``) the first
time one is needed, so a sandbox that only runs Python never compiles them; the
names they use (``os``, ``subprocess``, ``Capped``, the limits…) are the kernel's.

Like the kernel, this file runs inside the sandbox on its own ``python3`` with the
standard library only, and is mounted beside it (``/.hangar/``).
"""
# ruff: noqa: F821 (every free name here is the kernel's, see above)


def run_shell(command, timeout, cpu_seconds=None):
    warm_up()
    before = snapshot()
    if cpu_seconds:
        # Each process of the command gets the call's CPU time as a hard limit: the
        # kernel ends it when it is spent (the host counts them all together too).
        command = f"ulimit -t {max(1, int(cpu_seconds + 0.999))}\n{command}"
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=WORKSPACE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out, err = Capped(OUTPUT_BYTES, "stdout"), Capped(OUTPUT_BYTES, "stderr")
    status = "ok"
    deadline = time.monotonic() + timeout
    # Read both streams without letting endless output fill memory.
    import selectors

    os.set_blocking(proc.stdout.fileno(), False)
    os.set_blocking(proc.stderr.fileno(), False)
    streams = {proc.stdout: out, proc.stderr: err}
    selector = selectors.DefaultSelector()
    for stream in streams:
        selector.register(stream, selectors.EVENT_READ)
    exited_at = None
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = time.monotonic()
        elif exited_at is not None and time.monotonic() - exited_at > SHELL_DRAIN_SECONDS:
            break  # the command ended; what still holds its pipes is in the background
        for key, _ in selector.select(min(remaining, 0.05)):
            chunk = key.fileobj.read(65536)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            sink = streams[key.fileobj]
            sink.write(chunk.decode("utf-8", "replace"))
            if sink.truncated and sink.size >= OUTPUT_BYTES:
                status = "output_truncated"
        if status == "output_truncated":
            break
    if status != "ok":
        kill_group(proc.pid)
    try:
        code = proc.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        code = proc.wait()
        status = "timeout"
    out.flush_stream()
    err.flush_stream()
    if status == "ok" and code != 0:
        status = "error"
    error = None
    if status == "timeout":
        error = f"the command ran longer than {timeout} s"
    elif status == "output_truncated":
        error = f"output passed {OUTPUT_BYTES} bytes; the command was stopped"
    return {
        "status": status,
        "stdout": out.getvalue(),
        "stderr": err.getvalue(),
        "exit_code": code,
        "error": error,
        "files": changed(before, snapshot()),
    }


def run_program(argv):
    """The sandbox's program mode (``kernel.py --exec COMMAND ARGS``): a long-lived
    program that talks over its own stdio (an MCP server a namespace declared). It
    gets the egress relay like any sandbox, and nothing of the kernel's protocol: the
    program is started as a child with this process's stdin and stdout, and its exit
    status is this process's."""
    if resource is not None:
        # Memory is bounded by the host's cgroup: an address-space limit would stop
        # runtimes that reserve far more than they use (V8, the JVM).
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if FILE_BYTES:
            resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            os.write(2, f"cannot run {argv[0]!r}: {exc.strerror}\n".encode())
        os._exit(127)
    start_egress_relay()
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(pid, signal.SIGTERM))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def start_egress_relay():
    """In network mode ``allowlist``: relay the sandbox's ``127.0.0.1:PORT`` to the host's
    egress proxy, whose Unix socket is bound into the sandbox. The relay decides
    nothing; the host's proxy does. One thread, non-blocking, for every connection."""
    path = os.environ.get("HANGAR_EGRESS_SOCKET")
    port = int(os.environ.get("HANGAR_EGRESS_PORT", "0"))
    if not path or not port:
        return
    import contextlib
    import selectors
    import socket

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    ended = {}  # socket -> whether its reading side has ended

    def close(sock):
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        ended.pop(sock, None)
        sock.close()

    def forward(sock, peer):
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if data:
            try:
                peer.settimeout(30)
                peer.sendall(data)
                peer.setblocking(False)
                return
            except OSError:
                pass
        # This side is done: pass the end on, and close both once both are done.
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        ended[sock] = True
        with contextlib.suppress(OSError):
            peer.shutdown(socket.SHUT_WR)
        if data or ended.get(peer):  # a send failed, or both sides are done
            close(sock)
            close(peer)

    def loop():
        while True:
            for key, _ in selector.select():
                if key.data is None:
                    try:
                        client, _ = listener.accept()
                        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                        upstream.connect(path)
                    except OSError:
                        continue
                    for sock, peer in ((client, upstream), (upstream, client)):
                        sock.setblocking(False)
                        ended[sock] = False
                        selector.register(sock, selectors.EVENT_READ, peer)
                else:
                    forward(key.fileobj, key.data)

    size = _thread.stack_size(256 * 1024)
    _thread.start_new_thread(loop, ())
    _thread.stack_size(size)

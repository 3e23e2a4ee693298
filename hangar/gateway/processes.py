"""Several server processes on one port: Python runs one core per process, so a
machine's cores serve through as many processes, each a whole gateway (and its
workers), over the one PostgreSQL they share.

The parent binds the port once and hands the listening socket to each child; the
kernel gives each connection to whichever child accepts it first. Children die with
the parent, even by SIGKILL (the kernel's parent-death signal), so an orchestrator that
kills the pod's process leaves nothing behind; one child dying stops the others and the
parent exits with its code, for the orchestrator to restart the whole.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
from multiprocessing.connection import wait
from types import FrameType

import uvicorn

from hangar.config import Settings
from hangar.errors import ConfigurationError

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_SECONDS = 30.0
"""How long children have to finish after SIGTERM (their runs are held under leases
others take over, so a child killed past this loses nothing)."""


def check_processes(settings: Settings, count: int) -> None:
    if count > 1 and settings.embedded_database:
        raise ConfigurationError(
            f"{count} server processes need PostgreSQL: on SQLite they would all wait "
            "for its one writer",
            hint="set HANGAR_DATABASE_URL to a PostgreSQL database, or run one process "
            "(HANGAR_PROCESSES=1)",
        )


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_processes(settings: Settings, count: int, workers: int | None) -> int:
    """Serve on ``count`` processes until SIGTERM or SIGINT; returns the exit code."""
    sock = listening_socket(settings.host, settings.port)
    context = multiprocessing.get_context("spawn")  # no event loop or thread forked
    children = [
        context.Process(
            target=_child, args=(settings, workers, sock, os.getpid()), name=f"hangar-{n}"
        )
        for n in range(count)
    ]
    for child in children:
        child.start()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    ended = wait([child.sentinel for child in children])  # one ends (or all, on a stop)
    failed = None if stopping else next(c for c in children if c.sentinel in ended)
    if failed is not None:
        failed.join()  # its pipe closes a moment before it can be reaped
        log.error("server process %s exited (%s): stopping the others", failed.pid, failed.exitcode)
        stop(signal.SIGTERM, None)
    for child in children:
        child.join(STOP_SECONDS)
        if child.is_alive():
            child.kill()
            child.join()
    sock.close()
    if failed is None:  # stopped as asked (uvicorn ends by raising the signal it got)
        return 0
    code = failed.exitcode or 1
    return 128 - code if code < 0 else code


def _child(settings: Settings, workers: int | None, sock: socket.socket, parent: int) -> None:
    """One server process: its own runtime and event loop on the shared socket."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above
        return
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent, which stops the children
    from hangar.gateway.app import create_app
    from hangar.runtime.host import Runtime

    app = create_app(Runtime(settings), workers=workers)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])

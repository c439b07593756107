"""A fork server for hub processes, so a test can SIGKILL and restart the hub dozens of times in seconds.

Starting ``python -m edge.cli hub run`` costs 3-4 s of imports (scipy via filterpy, fastapi, bumble) on the
CI machine; fifty restarts would cost minutes. This server imports the hub's modules ONCE, then, for every
line ``{"argv": [...], "log": "path"}`` on stdin, forks a child that runs exactly ``edge.cli.main(argv)`` (the
``glucotwin`` entry point) with stdout/stderr appended to ``log``, and prints the child's pid. Each hub is a
real, separate OS process with its own SQLite connection, event loop and sockets, opened after the fork;
killing it with SIGKILL is the same as killing a freshly started interpreter. The server ignores SIGCHLD so
the kernel reaps killed children (a dead pid disappears, it does not linger as a zombie).

Run: ``python -m tests.edge.hub_forkserver`` (prints ``ready`` when the imports are done). Fork is safe here
because nothing the imports do starts a thread (checked at start-up).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading


def _preload() -> None:
    import bleak  # noqa: F401
    import bumble.transport  # noqa: F401
    import uvicorn  # noqa: F401

    import edge.agent.service  # noqa: F401
    import edge.agent.web  # noqa: F401
    import edge.cli  # noqa: F401
    import edge.hub_cli  # noqa: F401


def _child(argv: list[str], log: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the child's whole life
    from edge.cli import main

    code = 1
    try:
        code = main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    _preload()
    if threading.active_count() != 1:
        print(f"error: {threading.active_count()} threads after imports; fork would be unsafe", flush=True)
        sys.exit(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(list(request["argv"]), str(request["log"]))
        print(pid, flush=True)


if __name__ == "__main__":
    serve()

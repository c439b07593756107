"""Start ``glucotwin sim serve`` in a separate process for end-to-end tests (a helper, not a test module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def glucotwin_command(*args: str) -> list[str]:
    """The ``glucotwin`` CLI run with this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "edge.cli", *args]


@contextmanager
def simulator(*serve_args: str, startup_timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``glucotwin sim serve ARGS`` and yield the transport spec it prints first; stop it afterwards."""
    process = subprocess.Popen(
        glucotwin_command("sim", "serve", *serve_args),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        spec = _first_line(process, startup_timeout_s)
        if not spec.startswith("tcp-client:"):
            raise AssertionError(f"simulator printed {spec!r} first; stderr: {_stderr(process)}")
        yield spec
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _first_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    import threading

    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline() if process.stdout else ""))
    reader.daemon = True
    reader.start()
    reader.join(timeout_s)
    if not result or not result[0]:
        process.kill()
        raise AssertionError(f"simulator printed no spec within {timeout_s} s; stderr: {_stderr(process)}")
    return result[0].strip()


def _stderr(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        return "(still running)"
    return process.stderr.read() if process.stderr else ""

"""A persistent helper process spoken to in JSON lines (one request line in, one answer line out)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Sequence
from typing import Any


class PeerProcessError(RuntimeError):
    """The peer process died, answered garbage, or reported an error."""


class JsonLinesProcess:
    """Start ``command`` once; :meth:`request` writes one JSON line and reads one back.

    The child's stderr goes to ``stderr_path`` (or nowhere), so a chatty peer can never block on a full pipe.
    The child exits when its stdin closes: :meth:`close`, garbage collection or the parent's exit.
    """

    def __init__(self, command: Sequence[str], *, env: dict[str, str] | None = None, stderr_path: str | None = None,
                 cwd: str | None = None) -> None:
        self.command = list(command)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._stderr = open(stderr_path, "ab") if stderr_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=full_env,
                cwd=cwd, text=True, bufsize=1,
            )
        except OSError as error:
            raise PeerProcessError(f"cannot start {self.command[0]}: {error}") from error
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if not self.alive():
                raise PeerProcessError(f"{self.command[0]} exited with code {self._process.returncode}")
            assert self._process.stdin is not None and self._process.stdout is not None
            try:
                self._process.stdin.write(json.dumps(message, allow_nan=False) + "\n")
                self._process.stdin.flush()
                line = self._process.stdout.readline()
            except (BrokenPipeError, OSError) as error:
                raise PeerProcessError(f"{self.command[0]} pipe failed: {error}") from error
        if not line:
            raise PeerProcessError(f"{self.command[0]} closed its output (exit code {self._process.poll()})")
        try:
            answer = json.loads(line)
        except json.JSONDecodeError as error:
            raise PeerProcessError(f"{self.command[0]} answered non-JSON: {line[:200]!r}") from error
        if not answer.get("ok", False):
            raise PeerProcessError(f"{self.command[0]}: {answer.get('error', answer)}")
        return answer

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is None:
            return
        if process.poll() is None:
            try:
                if process.stdin:
                    process.stdin.close()
                process.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
        if self._stderr not in (None, subprocess.DEVNULL):
            self._stderr.close()  # type: ignore[union-attr]
        self._process = None  # type: ignore[assignment]

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

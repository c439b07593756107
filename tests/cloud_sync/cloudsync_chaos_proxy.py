"""A fault-injecting HTTP proxy for loopback chaos tests.

It forwards requests to an upstream service and, on ``POST /v1/ingest/...``, injects seeded faults:
``503`` (without forwarding), ``429`` with ``Retry-After``, ``drop_before`` (close the connection without
forwarding), and ``drop_after_commit`` (forward, let the service commit, then close the connection without
answering: the acknowledgement is lost). It records what it did so tests can assert every fault happened
and that ``Retry-After`` was honoured.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("pass", "503", "429", "drop_before", "drop_after_commit")


class ChaosProxy:
    def __init__(self, upstream_url: str, seed: int = 0, *, p_503: float = 0.12, p_429: float = 0.08,
                 p_drop_before: float = 0.05, p_drop_after_commit: float = 0.15, p_long_retry_after: float = 0.1,
                 host: str = "127.0.0.1") -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rng = random.Random(seed)
        self.weights = {"503": p_503, "429": p_429, "drop_before": p_drop_before,
                        "drop_after_commit": p_drop_after_commit}
        self.p_long_retry_after = p_long_retry_after
        self.enabled = True
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.retry_after_promises: list[tuple[str, float, float]] = []  # (path, time sent, seconds)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy.choose(self.command, self.path)
                if fault == "503":
                    return self._answer(503, b'{"error":{"code":"chaos","message":"unavailable"}}')
                if fault == "429":
                    seconds = 1 if proxy.rng_float() < proxy.p_long_retry_after else 0
                    with proxy.lock:
                        proxy.retry_after_promises.append((self.path, time.monotonic(), float(seconds)))
                    return self._answer(429, b'{"error":{"code":"chaos","message":"slow down"}}',
                                        {"Retry-After": str(seconds)})
                if fault == "drop_before":
                    self.close_connection = True
                    return None
                status, headers, payload = proxy.forward(self.command, self.path, self.headers, body)
                if fault == "drop_after_commit":
                    self.close_connection = True  # the service committed; the hub never hears of it
                    return None
                return self._answer(status, payload, {k: v for k, v in headers if k.lower() in
                                                      ("content-type", "retry-after")})

            def _answer(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if not headers or "content-type" not in {k.lower() for k in headers}:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _relay

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="chaos-proxy", daemon=True)

    def rng_float(self) -> float:
        with self.lock:
            return self.rng.random()

    def choose(self, method: str, path: str) -> str:
        with self.lock:
            self.arrivals[path].append(time.monotonic())
            if not self.enabled or method != "POST" or not path.startswith("/v1/ingest/"):
                fault = "pass"
            else:
                r = self.rng.random()
                fault = "pass"
                for name, weight in self.weights.items():
                    if r < weight:
                        fault = name
                        break
                    r -= weight
            self.counts[fault] += 1
            return fault

    def forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection", "keep-alive")}
            conn.request(method, path, body=body, headers=forwarded)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def retry_after_honoured(self) -> list[tuple[float, float]]:
        """For each 429 with Retry-After >= 1: (promised seconds, seconds until that path was hit again)."""
        out = []
        with self.lock:
            for path, sent, seconds in self.retry_after_promises:
                if seconds < 1:
                    continue
                later = [t for t in self.arrivals[path] if t > sent]
                if later:
                    out.append((seconds, min(later) - sent))
        return out

    def __enter__(self) -> ChaosProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

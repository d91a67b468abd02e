"""``/metrics`` (Prometheus), ``/healthz`` (the loop is alive) and ``/readyz`` (consuming, not degraded)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# (ok, detail) for one probe.
Probe = Callable[[], tuple[bool, str]]


def serve(registry: CollectorRegistry, port: int, healthz: Probe, readyz: Probe,
          host: str = "0.0.0.0", request_timeout_s: float = 5.0) -> ThreadingHTTPServer:
    """Start the server in a daemon thread and return it (``server.server_port`` has the bound port)."""

    class Handler(BaseHTTPRequestHandler):
        timeout = request_timeout_s  # a client that opens a connection and sends nothing does not hold a thread

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, detail = (healthz if path == "/healthz" else readyz)()
                body = json.dumps({"ok": ok, "detail": detail}).encode()
                self._send(200 if ok else 503, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the worker's own log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server

"""/healthz, /readyz and /metrics on one small HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scheduler.telemetry.metrics import Metrics


def serve(host: str, port: int, metrics: Metrics, ready: Callable[[], bool]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                code, body, ctype = 200, "ok\n", "text/plain"
            elif self.path == "/readyz":
                ok = ready()
                code, body, ctype = (200 if ok else 503), ("ok\n" if ok else "cache not synced\n"), "text/plain"
            elif self.path == "/metrics":
                code, body, ctype = 200, metrics.render(), "text/plain; version=0.0.4"
            else:
                code, body, ctype = 404, "not found\n", "text/plain"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server

"""A worker's or projector's own small HTTP server: `/metrics` and `/healthz`.

The process publishes a `Snapshot` (rendered metrics and whether it is healthy) from its
own loop about once a second; a daemon thread serves the latest one, so a scrape never
touches the consumer's state and cannot slow the loop down. Off unless a port is set.
`/healthz` answers 503 while folding (or projecting) has stalled, 200 otherwise.
Nothing served carries personal data: topics, partitions and offsets only.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("kycflow.kafka")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Snapshot:
    metrics: str = ""
    healthy: bool = True
    health: dict[str, Any] = field(default_factory=lambda: {"status": "starting"})


class StatusServer:
    def __init__(self, host: str, port: int) -> None:
        self.snapshot = Snapshot()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the stdlib's name
                snap = server.snapshot
                if self.path.split("?")[0] == "/metrics":
                    self._send(200, METRICS_TYPE, snap.metrics.encode())
                elif self.path.split("?")[0] == "/healthz":
                    body = json.dumps(snap.health).encode()
                    self._send(200 if snap.healthy else 503, "application/json", body)
                else:
                    self._send(404, "application/json", b'{"error": "not found"}')

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds: not worth a log line each

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="kycflow-status", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> StatusServer:
        self.thread.start()
        return self

    def publish(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot  # one reference swap: the serving thread sees old or new

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_status(host: str, port: int | None, what: str) -> StatusServer | None:
    """The server when a port is configured, else None; logs where it listens."""
    if port is None:
        return None
    server = StatusServer(host, port).start()
    log.info("%s metrics on http://%s:%d/metrics, health on /healthz", what, host, server.port)
    return server

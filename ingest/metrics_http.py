"""The HTTP endpoint a worker serves: ``/metrics``, ``/healthz`` (liveness), ``/readyz``.

It runs in a daemon thread of the worker's main process and reads the values every pool
process wrote (multiprocess mode), so one scrape shows the whole worker.
``/healthz`` and ``/readyz`` answer 200 or 503 with a small JSON body naming each check.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST

from ingest import metrics
from ingest.config import Settings
from ingest.health import Check, Probe, StateCollector, liveness


def verdict(checks: list[Check]) -> dict[str, object]:
    """The JSON body of a probe: ``status`` ok/fail and every check."""
    ok = all(c.ok for c in checks)
    return {"status": "ok" if ok else "fail", "checks": [c.as_dict() for c in checks]}


class _Handler(BaseHTTPRequestHandler):
    probe: Probe

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, metrics.scrape(StateCollector(self.probe)))
        elif path == "/healthz":
            self._probe([liveness()])
        elif path == "/readyz":
            self._probe(self.probe.ready())
        else:
            self._send(404, "text/plain", b"not found: try /metrics, /healthz or /readyz\n")

    def _probe(self, checks: list[Check]) -> None:
        body = verdict(checks)
        status = 200 if body["status"] == "ok" else 503
        self._send(status, "application/json", json.dumps(body).encode() + b"\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would flood the log; stay quiet."""


def start_server(settings: Settings, address: str, port: int) -> ThreadingHTTPServer:
    """Listen on ``address:port`` (port 0: any free one) and serve in a daemon thread."""
    handler = type("Handler", (_Handler,), {"probe": Probe(settings)})
    server = ThreadingHTTPServer((address, port), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server

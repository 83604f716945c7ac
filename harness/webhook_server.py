"""A tiny HTTPS webhook receiver for tests: records what it gets, can be told to fail.

``WebhookServer(tls)`` listens on 127.0.0.1:free port with the test CA's certificate.
Every POST is recorded (headers and body) in ``received`` when it was answered 2xx;
``fail_next(n)`` answers the next ``n`` POSTs with ``status`` (503 by default) and
``fail_always()`` until ``recover()``, so a test can break and mend a sink at will.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from harness.http_thread import ThreadedHttpServer
from harness.tls import TlsFiles


@dataclass(frozen=True)
class Received:
    """One accepted POST."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class WebhookState:
    received: list[Received] = field(default_factory=list)
    refused: int = 0  # POSTs answered with an error status
    fail_left: int = 0  # < 0: fail until recover()
    status: int = 503
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Received) -> int:
        with self.lock:
            if self.fail_left != 0:
                self.fail_left -= self.fail_left > 0
                self.refused += 1
                return self.status
            self.received.append(request)
            return 204


class _Handler(BaseHTTPRequestHandler):
    state: WebhookState

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.send_response(self.state.answer(request))
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookServer(ThreadedHttpServer):
    """Runs in a thread; ``url`` is ``https://localhost:PORT/hook``."""

    state: WebhookState

    def __init__(self, tls: TlsFiles) -> None:
        super().__init__(_Handler, WebhookState(), tls)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}/hook"

    @property
    def received(self) -> list[Received]:
        with self.state.lock:
            return list(self.state.received)

    @property
    def refused(self) -> int:
        return self.state.refused

    def fail_next(self, count: int, status: int = 503) -> None:
        with self.state.lock:
            self.state.fail_left, self.state.status = count, status

    def fail_always(self, status: int = 503) -> None:
        self.fail_next(-1, status)

    def recover(self) -> None:
        self.fail_next(0)

"""A small HTTP(S) server on 127.0.0.1:free port, served from a daemon thread (test servers)."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from harness.ports import free_port
from harness.process import Managed
from harness.tls import TlsFiles


class ThreadedHttpServer(Managed):
    """Binds at construction (``port`` is known at once); ``state`` is shared with the
    handler class as its ``state`` attribute. With ``tls`` it speaks HTTPS."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], state: Any, tls: TlsFiles | None = None
    ) -> None:
        self.state = state
        self.port = free_port()
        bound = type("Handler", (handler,), {"state": state})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), bound)
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

"""A fault-injecting HTTP reverse proxy in front of an S3 endpoint (moto), for storage tests.

Point a boto3 client (or an account's ``storage.endpoint_url``) at :attr:`S3FaultProxy.
endpoint_url`; every request is forwarded to the upstream endpoint and its reply relayed,
unless a :class:`Rule` matches it (method, a regex searched in the path, optionally a request
header). A rule fires on matching requests ``nth`` .. ``nth + times - 1``, counted over the
proxy's life (``times=None``: every one from ``nth`` on), and then

- ``ERROR``: answer ``status`` with an S3 XML error body naming ``code`` (500
  ``InternalError``, 503 ``SlowDown``: botocore's standard retry mode retries both); the
  request never reaches the store;
- ``STALL``: send nothing for ``seconds`` (longer than the client's read timeout) or until
  the client hangs up, then close; with ``forward=True`` the request is forwarded first,
  so the store does act on it;
- ``LOSE_REPLY``: forward (the store acts on it, e.g. a PUT is stored), then close the
  connection without answering a byte;
- ``REWRITE``: forward, and relay the reply with the headers in ``set_headers`` replaced
  (added if absent), e.g. a wrong ``ETag`` or ``x-amz-checksum-sha256``.

Every request is logged as an :class:`Exchange` (method, path, what the client got, what
the store answered, which fault fired) so a test can prove that retries happened.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from email.message import Message
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from harness.ports import free_port
from harness.process import Managed

_NOT_THE_BODY = b"not the stored body"
WRONG_ETAG = '"' + hashlib.md5(_NOT_THE_BODY, usedforsecurity=False).hexdigest() + '"'
WRONG_SHA256 = base64.b64encode(hashlib.sha256(_NOT_THE_BODY).digest()).decode()
# hop-by-hop headers, and Content-Length, which the proxy sets itself
_NOT_RELAYED = {"connection", "keep-alive", "expect", "transfer-encoding", "te", "content-length"}
_MESSAGES = {
    "InternalError": "We encountered an internal error. Please try again.",
    "SlowDown": "Please reduce your request rate.",
}
_BIND_ATTEMPTS = 3


class Action(Enum):
    """What a matching :class:`Rule` does to its request (see the module docstring)."""

    ERROR = "error"
    STALL = "stall"
    LOSE_REPLY = "lose_reply"
    REWRITE = "rewrite"


@dataclass(frozen=True, slots=True)
class Rule:
    """Apply ``action`` to matching requests ``nth`` .. ``nth + times - 1`` (None: all)."""

    method: str
    path: str
    action: Action
    nth: int = 1
    times: int | None = 1
    header: tuple[str, str] | None = None
    status: int = 503
    code: str = "SlowDown"
    seconds: float = 30.0
    forward: bool = False
    set_headers: tuple[tuple[str, str], ...] = ()
    drop_request_headers: tuple[str, ...] = ()  # REWRITE: forwarded without these

    def matches(self, method: str, path: str, headers: Message) -> bool:
        if method != self.method.upper() or not re.search(self.path, path):
            return False
        return self.header is None or headers.get(self.header[0]) == self.header[1]

    def fires(self, occurrence: int) -> bool:
        return occurrence >= self.nth and (self.times is None or occurrence < self.nth + self.times)


def error(
    method: str,
    path: str,
    status: int = 503,
    code: str = "SlowDown",
    *,
    nth: int = 1,
    times: int | None = 1,
) -> Rule:
    """Answer ``status`` with the S3 error ``code`` instead of forwarding."""
    return Rule(method, path, Action.ERROR, nth=nth, times=times, status=status, code=code)


def corrupt(
    method: str,
    path: str,
    *,
    etag: bool = True,
    checksum: bool = True,
    nth: int = 1,
    times: int | None = 1,
) -> Rule:
    """Forward, then relay a wrong ``ETag`` and/or ``x-amz-checksum-sha256``."""
    headers = (("ETag", WRONG_ETAG),) * etag + (("x-amz-checksum-sha256", WRONG_SHA256),) * checksum
    return Rule(method, path, Action.REWRITE, nth=nth, times=times, set_headers=headers)


def ignore_conditional_writes() -> Rule:
    """Every PUT reaches the store without ``If-None-Match``: a store that ignores it."""
    return Rule("PUT", "", Action.REWRITE, times=None, drop_request_headers=("If-None-Match",))


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request: ``status`` is what the client got (None: no reply), ``upstream`` the store's."""

    method: str
    path: str
    status: int | None
    upstream: int | None = None
    fault: str | None = None


class S3FaultProxy(Managed):
    """A threaded reverse proxy on ``127.0.0.1:port`` (a free port), a context manager."""

    host = "127.0.0.1"

    def __init__(self, upstream_url: str, rules: list[Rule] | None = None) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"expected http://HOST:PORT, got {upstream_url!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.log: list[Exchange] = []
        self._rules: list[Rule] = []
        self._seen: list[int] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for rule in rules or []:
            self.add(rule)

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``: what clients use instead of the upstream URL."""
        if self._server is None:
            raise RuntimeError("the S3 fault proxy is not running")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def add(self, rule: Rule) -> None:
        """Add a rule; its occurrences are counted from now on."""
        with self._lock:
            self._rules.append(rule)
            self._seen.append(0)

    def clear(self) -> None:
        """Drop every rule: from now on the proxy forwards everything untouched."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()

    def requests(self, method: str | None = None, path: str = "") -> list[Exchange]:
        """The logged exchanges with this method (any if None) whose path matches ``path``."""
        with self._lock:
            log = list(self.log)
        return [e for e in log if method in (None, e.method) and re.search(path, e.path)]

    def _match(self, method: str, path: str, headers: Message) -> Rule | None:
        with self._lock:
            fired = None
            for index, rule in enumerate(self._rules):
                if rule.matches(method, path, headers):
                    self._seen[index] += 1
                    if fired is None and rule.fires(self._seen[index]):
                        fired = rule
            return fired

    def _record(self, exchange: Exchange) -> None:
        with self._lock:
            self.log.append(exchange)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        handler = type("_BoundHandler", (_Handler,), {"proxy": self})
        for attempt in range(_BIND_ATTEMPTS):
            try:
                self._server = ThreadingHTTPServer((self.host, free_port(self.host)), handler)
                break
            except OSError:
                if attempt == _BIND_ATTEMPTS - 1:
                    raise
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends any stall at once
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:  # wake handlers waiting for a kept-alive client's next request
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _track(self, conn: socket.socket, *, open_: bool) -> None:
        with self._lock:
            (self._conns.add if open_ else self._conns.discard)(conn)


class _Handler(BaseHTTPRequestHandler):
    """One client connection; HTTP/1.1 keep-alive like boto3's pooled connections."""

    proxy: S3FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the proxy's log is :attr:`S3FaultProxy.log`."""

    def setup(self) -> None:
        super().setup()
        self.proxy._track(self.connection, open_=True)

    def finish(self) -> None:
        self.proxy._track(self.connection, open_=False)
        super().finish()

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        rule = self.proxy._match(self.command, self.path, self.headers)
        if rule is not None and rule.action is Action.ERROR:
            self._send_error(rule)
            return
        upstream = None
        if rule is None or rule.action is not Action.STALL or rule.forward:
            try:
                upstream = self._forward(body, rule.drop_request_headers if rule else ())
            except OSError:
                upstream = (502, [("Content-Type", "text/plain")], b"upstream unreachable")
        fault = rule.action.value if rule is not None else None
        if rule is not None and rule.action in (Action.STALL, Action.LOSE_REPLY):
            if rule.action is Action.STALL:
                self._stall(rule.seconds)
            self.close_connection = True
            answered = upstream[0] if upstream else None
            self.proxy._record(Exchange(self.command, self.path, None, answered, fault))
            return
        assert upstream is not None
        status, headers, reply = upstream
        if rule is not None:
            names = {name.lower() for name, _ in rule.set_headers}
            headers = [h for h in headers if h[0].lower() not in names] + list(rule.set_headers)
        self._reply(status, headers, reply)
        self.proxy._record(Exchange(self.command, self.path, status, status, fault))

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _proxy

    def _forward(
        self, body: bytes, drop: tuple[str, ...] = ()
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.proxy.upstream, timeout=30)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            dropped = {d.lower() for d in drop}
            for name, value in self.headers.items():
                if name.lower() not in _NOT_RELAYED and name.lower() not in dropped:
                    conn.putheader(name, value)
            if body or self.command in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in _NOT_RELAYED:
                self.send_header(name, value)
        if self.command == "HEAD":  # no body: Content-Length still describes the object
            length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            self.send_header("Content-Length", length)
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _send_error(self, rule: Rule) -> None:
        resource = escape(self.path.split("?", 1)[0])
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(rule.code)}</Code>"
            f"<Message>{escape(_MESSAGES.get(rule.code, rule.code))}</Message>"
            f"<Resource>{resource}</Resource><RequestId>s3-fault-proxy</RequestId></Error>"
        ).encode()
        self._reply(rule.status, [("Content-Type", "application/xml")], body)
        self.proxy._record(Exchange(self.command, self.path, rule.status, None, "error"))

    def _stall(self, seconds: float) -> None:
        """Answer nothing until ``seconds`` pass, the client hangs up, or the proxy stops."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.proxy._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable:  # EOF (the client gave up) or an unexpected pipelined request
                return

"""A POP3 client session (RFC 1939, 2449, 2595): TLS, STLS, USER/PASS, UIDL, RETR, DELE.

Protocol rules that everything else relies on:

- Nothing is deleted until QUIT: DELE only marks, and QUIT enters the UPDATE state
  in which the server removes the marked messages (and, with ``EXPIRE 0`` or Gmail's
  POP settings, may remove retrieved ones too).
- So after a failure we never send QUIT while something retrieved is not stored:
  :meth:`Pop3Session.abandon` drops the connection and the server commits nothing.
- RETR returns the message with CRLF line endings; we strip the terminating ``.``
  line and undo dot-stuffing, and keep every other byte as sent.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import structlog

from ingest.errors import (
    AuthError,
    PermanentError,
    ProtocolError,
    SecurityError,
    TransientError,
)
from ingest.failpoints import failpoint
from ingest.model import MailboxEntry
from ingest.pop3_auth import Credentials, authenticate

_log = structlog.get_logger("ingest.pop3")
MAX_STATUS_LINE = 8192
_TERMINATOR = b"\r\n.\r\n"
_RESP_CODE = re.compile(rb"^\[([A-Z0-9/-]+)\]")
_TRANSIENT_CODES = {"IN-USE", "LOGIN-DELAY", "SYS/TEMP"}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect; no secrets here."""

    host: str
    port: int
    security: str  # "tls" | "starttls" | "plain"
    timeout: float = 60.0
    ca_file: Path | None = None
    allow_plaintext: bool = False
    deadline_seconds: float = 3600.0


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus the optional extra CA; hostname and chain verification always on."""
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _error_for(reply: bytes, what: str) -> Exception:
    text = reply.decode("utf-8", "replace").strip()
    match = _RESP_CODE.match(reply[5:]) if reply.startswith(b"-ERR ") else None
    code = match.group(1).decode() if match else ""
    if code in _TRANSIENT_CODES:
        return TransientError(f"{what}: server said {text}")
    if code == "AUTH" or what in ("USER", "PASS", "APOP", "AUTH"):
        return AuthError(f"{what}: server refused authentication: {text}")
    if code == "SYS/PERM":
        return PermanentError(f"{what}: server said {text}")
    return ProtocolError(f"{what}: server said {text}")


class Pop3Session:
    """One connected, authenticated POP3 session. Use :func:`open_session`."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.capabilities: dict[str, str] = {}
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._deadline = time.monotonic() + endpoint.deadline_seconds
        self.encrypted = False
        self.content_identity = False
        self._retrieved: set[int] = set()
        self.greeting = b""

    # -- wire -------------------------------------------------------------

    def connect(self) -> None:
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=ep.timeout)
        except OSError as err:
            raise TransientError(f"cannot connect to {ep.host}:{ep.port}: {err}") from err
        self._sock = sock
        if ep.security == "tls":
            self._start_tls()
        self.greeting = self._expect_ok("greeting")
        if ep.security == "starttls":
            self.capa()
            if "STLS" not in self.capabilities:
                raise SecurityError(
                    f"{ep.host}:{ep.port} does not offer STLS; refusing to continue in plaintext"
                )
            self._expect_ok("STLS", b"STLS")
            self._start_tls()
        self.capa()

    def _start_tls(self) -> None:
        assert self._sock is not None
        if self._buf:
            raise ProtocolError("server sent data before the TLS handshake")
        ctx = tls_context(self.endpoint.ca_file)
        try:
            self._sock = ctx.wrap_socket(self._sock, server_hostname=self.endpoint.host)
        except ssl.SSLCertVerificationError as err:
            raise SecurityError(f"TLS certificate of {self.endpoint.host} rejected: {err}") from err
        except (ssl.SSLError, OSError) as err:
            raise TransientError(f"TLS handshake with {self.endpoint.host} failed: {err}") from err
        self.encrypted = True

    def _recv(self) -> None:
        if self._sock is None:
            raise TransientError("POP3 connection is closed")
        if time.monotonic() > self._deadline:
            raise TransientError("POP3 session deadline exceeded")
        try:
            chunk = self._sock.recv(262144)
        except TimeoutError as err:
            raise TransientError("POP3 server timed out") from err
        except OSError as err:
            raise TransientError(f"POP3 connection failed: {err}") from err
        if not chunk:
            raise TransientError("POP3 server closed the connection")
        self._buf += chunk

    def _send(self, line: bytes) -> None:
        if self._sock is None:
            raise TransientError("POP3 connection is closed")
        try:
            self._sock.sendall(line + b"\r\n")
        except OSError as err:
            raise TransientError(f"POP3 connection failed while sending: {err}") from err

    def _readline(self) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > MAX_STATUS_LINE:
                raise ProtocolError("status line too long")
            self._recv()
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _read_multiline(self) -> bytes:
        """Body of a multi-line reply, terminator removed and dot-stuffing undone."""
        start = 0
        while True:
            if self._buf[:3] == b".\r\n":
                del self._buf[:3]
                return b""
            end = self._buf.find(_TERMINATOR, start)
            if end >= 0:
                break
            start = max(0, len(self._buf) - 4)
            self._recv()
        body = bytes(self._buf[: end + 2])
        del self._buf[: end + 5]
        if body.startswith(b".."):
            body = body[1:]
        return body.replace(b"\r\n..", b"\r\n.")

    def _expect_ok(self, what: str, command: bytes | None = None) -> bytes:
        if command is not None:
            self._send(command)
        reply = self._readline()
        if not reply.startswith(b"+OK"):
            raise _error_for(reply, what)
        return reply

    # -- commands ---------------------------------------------------------

    def capa(self) -> dict[str, str]:
        self._send(b"CAPA")
        if not self._readline().startswith(b"+OK"):
            self.capabilities = {}
            return self.capabilities
        caps = {}
        for line in self._read_multiline().decode("ascii", "replace").splitlines():
            name, _, args = line.strip().partition(" ")
            if name:
                caps[name.upper()] = args
        self.capabilities = caps
        return caps

    def login(self, creds: Credentials) -> None:
        """Authenticate with the configured method (see :mod:`ingest.pop3_auth`)."""
        authenticate(self, creds)

    def listing(self) -> list[MailboxEntry]:
        """UIDL + LIST joined by message number (UIDLs are checked by the caller).

        A server without UIDL gets content-derived identities instead (see
        :meth:`_content_identities`).
        """
        sizes = self._numbered("LIST")
        self._send(b"UIDL")
        reply = self._readline()
        if reply.startswith(b"+OK"):
            uidls = self._parse_numbered("UIDL", self._read_multiline())
        else:
            self.content_identity = True
            _log.warning(
                "mailbox.no_uidl",
                host=self.endpoint.host,
                reply=reply[:200].decode("utf-8", "replace"),
            )
            uidls = self._content_identities(sizes)
        entries = []
        for number, uidl in uidls.items():
            if number not in sizes or not sizes[number].isdigit():
                raise ProtocolError(f"LIST has no size for message {number}")
            entries.append(MailboxEntry(number, uidl, int(sizes[number])))
        return sorted(entries, key=lambda e: e.number)

    def _content_identities(self, sizes: dict[int, str]) -> dict[int, str]:
        """Identities for a server without UIDL: ``sha-`` + SHA-256 of the header block
        (``TOP n 0``; the whole message when TOP is missing too), truncated to 40 hex
        digits; a repeat of the same headers gets ``.2``, ``.3``... in listing order."""
        out: dict[int, str] = {}
        seen: dict[str, int] = {}
        for number in sorted(sizes):
            entry = MailboxEntry(number, "", 0)
            content = self.headers(entry)
            if content is None:
                content = self.retrieve(entry)
            digest = "sha-" + hashlib.sha256(content).hexdigest()[:40]
            seen[digest] = seen.get(digest, 0) + 1
            out[number] = digest if seen[digest] == 1 else f"{digest}.{seen[digest]}"
        return out

    def _numbered(self, command: str) -> dict[int, str]:
        self._expect_ok(command, command.encode())
        return self._parse_numbered(command, self._read_multiline())

    @staticmethod
    def _parse_numbered(command: str, body: bytes) -> dict[int, str]:
        out: dict[int, str] = {}
        for line in body.decode("ascii", "replace").split("\r\n"):
            if not line:
                continue
            num, _, value = line.partition(" ")
            if not num.isdigit():
                raise ProtocolError(f"{command}: malformed line {line[:80]!r}")
            out[int(num)] = value.strip()
        return out

    def retrieve(self, entry: MailboxEntry) -> bytes:
        self._retrieved.add(entry.number)
        self._expect_ok("RETR", b"RETR %d" % entry.number)
        return self._read_multiline()

    def retrieved(self) -> set[int]:
        return set(self._retrieved)

    def headers(self, entry: MailboxEntry) -> bytes | None:
        """``TOP n 0``: the header block, or None when the server does not offer TOP."""
        if "TOP" not in self.capabilities:
            return None
        self._expect_ok("TOP", b"TOP %d 0" % entry.number)
        return self._read_multiline()

    def delete(self, entry: MailboxEntry) -> None:
        self._expect_ok("DELE", b"DELE %d" % entry.number)

    def commit(self) -> None:
        """QUIT: the server enters UPDATE and removes the messages marked with DELE."""
        try:
            self._send(b"QUIT")
            failpoint("after_quit_sent")
            self._expect_ok("QUIT")
        finally:
            self.close()

    def reset_and_quit(self) -> None:
        """RSET + QUIT: unmark everything, then leave politely. Only when nothing is at risk."""
        try:
            self._expect_ok("RSET", b"RSET")
            self._expect_ok("QUIT", b"QUIT")
        finally:
            self.close()

    def abandon(self) -> None:
        """Drop the connection without QUIT: the server commits nothing at all."""
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            with suppress(OSError):
                sock.close()


@contextmanager
def open_session(endpoint: Endpoint, creds: Credentials) -> Iterator[Pop3Session]:
    """Connect and log in; on an exception inside the block the connection is dropped."""
    session = Pop3Session(endpoint)
    try:
        session.connect()
        session.login(creds)
        yield session
    finally:
        session.close()

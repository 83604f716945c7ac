"""The POP3 connection itself: address policy, TLS, timeouts, and reading replies.

- Before connecting, the host's addresses are checked: link-local and cloud-metadata
  addresses are always refused; loopback, private and other non-global addresses only
  when the account allows them. We connect to the address we checked (no second lookup).
- Certificate and hostname verification are always on (system CAs plus ``ca_file``), with
  optional SHA-256 pinning of the server certificate.
- Every read has a timeout, and the whole session has a deadline, so a server that drips
  one byte at a time cannot hold a worker forever.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import (
    AuthError,
    PermanentError,
    ProtocolError,
    SecurityError,
    TransientError,
)

MAX_STATUS_LINE = 8192
PARTIAL_FLUSH = 1024 * 1024
_TERMINATOR = b"\r\n.\r\n"
_RESP_CODE = re.compile(rb"^\[([A-Z0-9/-]+)\]")
_TRANSIENT_CODES = {"IN-USE", "LOGIN-DELAY", "SYS/TEMP"}
_AUTH_COMMANDS = {"USER", "PASS", "APOP", "AUTH"}
METADATA_ADDRESSES = {
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
}


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
    allow_private: bool = False
    fingerprint: str | None = None  # SHA-256 of the server certificate (DER), hex


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """System CAs plus the optional extra CA; hostname and chain verification always on."""
    ctx = ssl.create_default_context()
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def error_for(reply: bytes, what: str) -> TransientError | PermanentError:
    """Map an ``-ERR`` reply to our errors by its RFC 2449/3206 response code."""
    text = reply.decode("utf-8", "replace").strip()
    match = _RESP_CODE.match(reply[5:]) if reply.startswith(b"-ERR ") else None
    code = match.group(1).decode() if match else ""
    if code in _TRANSIENT_CODES:
        return TransientError(f"{what}: server said {text}")
    if code == "AUTH" or what in _AUTH_COMMANDS:
        return AuthError(f"{what}: server refused authentication: {text}")
    if code == "SYS/PERM":
        return PermanentError(f"{what}: server said {text}")
    return ProtocolError(f"{what}: server said {text}")


def _literal(host: str) -> bool:
    """An IP address written in the config, or ``localhost``: the operator named it."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        ipaddress.ip_address(host.strip("[]").split("%", maxsplit=1)[0])
    except ValueError:
        return False
    return True


def permitted_address(host: str, port: int, allow_private: bool) -> str:
    """The first address of ``host`` we may connect to, or a SecurityError saying why not.

    Link-local and cloud-metadata addresses are always refused. A *name* that resolves to
    a loopback or private address is refused unless the account allows private networks
    (a DNS answer must not steer a worker into the internal network); an address written
    as such in the config, or ``localhost``, is the operator's explicit choice.
    """
    allow_private = allow_private or _literal(host)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as err:
        raise TransientError(f"cannot resolve {host}: {err}") from err
    refused = []
    for info in infos:
        address = str(info[4][0])
        ip = ipaddress.ip_address(address.split("%", maxsplit=1)[0])
        if ip in METADATA_ADDRESSES or ip.is_link_local:
            refused.append(f"{address} (link-local or cloud metadata)")
        elif not ip.is_global and not allow_private:
            refused.append(f"{address} (loopback/private; set allow_private_network: true)")
        else:
            return address
    raise SecurityError(f"refusing to connect to {host}: " + ", ".join(refused))


def _unstuff(lines: bytes, at_line_start: bool) -> bytes:
    """Undo RFC 1939 dot-stuffing in whole lines (the first one only if it starts a line)."""
    if at_line_start and lines.startswith(b".."):
        lines = lines[1:]
    return lines.replace(b"\r\n..", b"\r\n.")


class Pop3Wire:
    """A connected socket with buffered, deadline-bound reads of POP3 replies."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.encrypted = False
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._out = bytearray()  # pipelined commands not yet sent (see ``_queue``)
        self._queued = 0  # how many
        self._deadline = time.monotonic() + endpoint.deadline_seconds

    def open_socket(self) -> None:
        ep = self.endpoint
        address = permitted_address(ep.host, ep.port, ep.allow_private)
        try:
            self._sock = socket.create_connection((address, ep.port), timeout=ep.timeout)
        except OSError as err:
            raise TransientError(f"cannot connect to {ep.host}:{ep.port}: {err}") from err

    def start_tls(self) -> None:
        assert self._sock is not None
        if self._buf:
            raise ProtocolError("server sent data before the TLS handshake")
        host = self.endpoint.host
        try:
            tls = tls_context(self.endpoint.ca_file).wrap_socket(self._sock, server_hostname=host)
        except ssl.SSLCertVerificationError as err:
            raise SecurityError(f"TLS certificate of {host} rejected: {err}") from err
        except (ssl.SSLError, OSError) as err:
            raise TransientError(f"TLS handshake with {host} failed: {err}") from err
        self._sock = tls
        self.encrypted = True
        self._check_pin(tls)

    def _check_pin(self, tls: ssl.SSLSocket) -> None:
        pin = self.endpoint.fingerprint
        if pin is None:
            return
        der = tls.getpeercert(binary_form=True) or b""
        actual = hashlib.sha256(der).hexdigest()
        if actual != pin.replace(":", "").lower():
            raise SecurityError(
                f"TLS certificate of {self.endpoint.host} has SHA-256 {actual}, not the pinned one"
            )

    def _recv(self) -> None:
        if self._sock is None:
            raise TransientError("POP3 connection is closed")
        if self._out:
            self._flush()
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

    def _queue(self, line: bytes) -> None:
        """A pipelined command: sent with the others queued, at the latest before the next
        read from the socket (so a reply is never awaited for a command still queued)."""
        self._out += line + b"\r\n"
        self._queued += 1

    def _send(self, line: bytes) -> None:
        self._queue(line)
        self._flush()

    def _flush(self) -> None:
        if self._sock is None:
            raise TransientError("POP3 connection is closed")
        data, self._out, self._queued = self._out, bytearray(), 0
        try:
            self._sock.sendall(data)
        except OSError as err:
            raise TransientError(f"POP3 connection failed while sending: {err}") from err

    def _readline(self) -> bytes:
        """One status line; a bare LF ending (seen from some old servers) is accepted too."""
        while (end := self._buf.find(b"\n")) < 0:
            if len(self._buf) > MAX_STATUS_LINE:
                raise ProtocolError("status line too long")
            self._recv()
        line = bytes(self._buf[:end]).removesuffix(b"\r")
        del self._buf[: end + 1]
        return line

    def _read_multiline(self) -> bytes:
        """Body of a multi-line reply, terminator removed and dot-stuffing undone."""
        parts: list[bytes] = []
        self._read_multiline_into(parts.append)
        return b"".join(parts)

    def _read_multiline_into(self, sink: Callable[[bytes], object]) -> None:
        """Stream a multi-line reply into ``sink`` piece by piece, undoing dot-stuffing.

        Complete lines are passed on as they arrive; a line longer than PARTIAL_FLUSH is
        passed on in parts, so no line length (real mail has lines far beyond poplib's
        2,048 bytes) makes the buffer grow without bound.
        """
        at_line_start = True
        while True:
            if at_line_start and self._buf[:3] == b".\r\n":
                del self._buf[:3]
                return
            last = self._buf.rfind(b"\r\n")
            if last < 0:
                if len(self._buf) > PARTIAL_FLUSH:
                    sink(_unstuff(bytes(self._buf[:-1]), at_line_start))
                    del self._buf[:-1]
                    at_line_start = False
                self._recv()
                continue
            lines = bytes(self._buf[: last + 2])
            # One scan for a line starting with a dot: almost always there is none (the
            # lines go on as they are) or it is the terminator. A stuffed line (or a
            # stuffed first line) takes the two-pass route.
            dot = lines.find(b"\r\n.")
            if (at_line_start and lines[:1] == b".") or (
                dot >= 0 and not lines.startswith(_TERMINATOR, dot)
            ):
                end = lines.find(_TERMINATOR)
                if end >= 0:
                    sink(_unstuff(lines[: end + 2], at_line_start))
                    del self._buf[: end + 5]
                    return
                sink(_unstuff(lines, at_line_start))
            elif dot >= 0:
                sink(lines[: dot + 2])
                del self._buf[: dot + 5]
                return
            else:
                sink(lines)
            del self._buf[: last + 2]
            at_line_start = True
            if not self._buf:
                self._recv()

    def _expect_ok(self, what: str, command: bytes | None = None) -> bytes:
        if command is not None:
            self._send(command)
        reply = self._readline()
        if not reply.startswith(b"+OK"):
            raise error_for(reply, what)
        return reply

    def close(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            with suppress(OSError):
                sock.close()

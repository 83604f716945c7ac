"""A bare POP3 client on a raw socket: the yardstick a poll's fixed cost is measured against.

It does only what the protocol needs (greeting, USER/PASS, one command, QUIT) and times
each step with ``perf_counter``, so a measured ``UIDL`` is the server's work plus loopback
transfer, with no parsing beyond finding the terminating ``.`` line.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionTimes:
    """Seconds spent in each step of one bare session."""

    connect_login: float
    uidl: float
    quit: float
    uidl_lines: int

    @property
    def total(self) -> float:
        return self.connect_login + self.uidl + self.quit


class RawPop3:
    """One plain POP3 connection to ``127.0.0.1:port``."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self._ok(self._line())

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("POP3 server closed the connection")
        self.buf += chunk

    @staticmethod
    def _ok(line: bytes) -> bytes:
        if not line.startswith(b"+OK"):
            raise ConnectionError(f"POP3 server said {line[:120]!r}")
        return line

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self._ok(self._line())

    def multiline(self, line: str) -> bytes:
        """The body of a multi-line reply (dot-stuffing left as is)."""
        self.command(line)
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 0
                break
            end = self.buf.find(b"\r\n.\r\n")
            if end >= 0:
                end += 2
                break
            self._fill()
        body, self.buf = self.buf[:end], self.buf[end + 3 :]
        return body

    def login(self, user: str, password: str) -> None:
        self.command(f"USER {user}")
        self.command(f"PASS {password}")

    def close(self) -> None:
        self.command("QUIT")
        self.sock.close()


def time_uidl_session(port: int, user: str, password: str) -> SessionTimes:
    """Connect, log in, UIDL, QUIT: each step timed."""
    t0 = time.perf_counter()
    pop = RawPop3(port)
    pop.login(user, password)
    t1 = time.perf_counter()
    body = pop.multiline("UIDL")
    t2 = time.perf_counter()
    pop.close()
    t3 = time.perf_counter()
    return SessionTimes(t1 - t0, t2 - t1, t3 - t2, body.count(b"\r\n"))


def uidls(port: int, user: str, password: str) -> dict[int, str]:
    """Message number -> UIDL, as the server lists them."""
    pop = RawPop3(port)
    pop.login(user, password)
    body = pop.multiline("UIDL")
    pop.close()
    out = {}
    for line in body.decode().splitlines():
        number, uidl = line.split(" ", 1)
        out[int(number)] = uidl
    return out


def top_headers(port: int, user: str, password: str, numbers: list[int]) -> dict[int, bytes]:
    """The header block of each message in ``numbers`` (TOP n 0)."""
    pop = RawPop3(port)
    pop.login(user, password)
    out = {n: pop.multiline(f"TOP {n} 0") for n in numbers}
    pop.close()
    return out

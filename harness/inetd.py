"""A tiny inetd: accept on a free 127.0.0.1 port, run one program per connection.

Each accepted connection is handed to a fresh child process as its stdin and stdout (as
inetd's ``nowait`` mode does); stderr goes to a log file. Children are tracked and stopped
by PID; the listening socket is closed at :meth:`Inetd.stop`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from harness.ports import free_port
from harness.process import Managed, ServerStartError, stop_process


class Inetd(Managed):
    """Run ``argv`` for every connection to ``host:port`` (a free port unless given)."""

    host = "127.0.0.1"

    def __init__(self, argv: Sequence[str], log_path: Path, port: int = 0) -> None:
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.port = port
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> Self:
        """Bind and listen (retrying a port lost to a race), then accept in a thread."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((self.host, self.port or free_port(self.host)))
            except OSError:
                sock.close()
                if self.port or attempt == 2:
                    raise
                continue
            break
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name=f"inetd-{self.port}", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # the socket was closed by stop()
            try:
                with self.log_path.open("ab") as log:
                    child = subprocess.Popen(
                        self.argv,
                        stdin=conn.fileno(),
                        stdout=conn.fileno(),
                        stderr=log,
                        close_fds=True,
                    )
            except OSError:
                conn.close()
                continue
            conn.close()  # the child holds its own copies
            with self._lock:
                self._children = [c for c in self._children if c.poll() is None]
                self._children.append(child)

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every session process has exited (e.g. after a client's QUIT)."""
        with self._lock:
            children = list(self._children)
        for child in children:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                raise TimeoutError(f"session {child.pid} still running after {timeout}s") from exc

    def stop(self) -> None:
        """Stop accepting, then stop every session process by PID. Idempotent."""
        self._stopping.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        with self._lock:
            children, self._children = self._children, []
        for child in children:
            stop_process(child)


def start_pop3(inetd: Inetd, what: str, timeout: float = 10.0) -> None:
    """Start ``inetd`` and wait until a connection gets a POP3 greeting (``+OK``)."""
    from harness.dovecot import pop3_greets  # noqa: PLC0415 - dovecot imports much more

    inetd.start()
    deadline = time.monotonic() + timeout
    while not pop3_greets(inetd.host, inetd.port, timeout=2):
        if time.monotonic() > deadline:
            inetd.stop()
            raise ServerStartError(f"{what} on port {inetd.port} sends no greeting")
        time.sleep(0.1)


class InetdPop3(Managed):
    """Base of a POP3 server run per connection by an :class:`Inetd` on ``pop3_port``.

    Plain POP3 only unless a subclass says otherwise (``pop3s_port`` is then the same port).
    Subclasses give ``what``, ``argv`` and ``log_path`` to ``__init__`` and may override
    :meth:`missing` (why it cannot run), :meth:`prepare` (before the first connection) and
    :meth:`cleanup` (after the last).
    """

    host = "127.0.0.1"
    security_modes: tuple[str, ...] = ("plain",)
    ca_file: Path | None = None

    def __init__(self, what: str, argv: Sequence[str], log_path: Path) -> None:
        self.what = what
        self._inetd = Inetd(argv, log_path)

    @property
    def pop3_port(self) -> int:
        return self._inetd.port

    @property
    def pop3s_port(self) -> int:
        return self._inetd.port

    def missing(self) -> str:
        return ""

    def prepare(self) -> None:
        """Write configuration, make directories: whatever sessions need."""

    def cleanup(self) -> None:
        """Remove what :meth:`prepare` and the tests made outside the workdir."""

    def start(self) -> Self:
        missing = self.missing()
        if missing:
            raise ServerStartError(missing)
        self.prepare()
        start_pop3(self._inetd, self.what)
        return self

    def stop(self) -> None:
        """Stop the accept loop and every session, then :meth:`cleanup`. Idempotent."""
        self._inetd.stop()
        self.cleanup()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until every session has ended (servers apply deletions at QUIT)."""
        self._inetd.wait_idle(timeout)

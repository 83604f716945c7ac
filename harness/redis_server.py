"""A throwaway redis-server on a free loopback port, with no persistence, stopped by PID."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from types import TracebackType

from harness.ports import free_port
from harness.process import ServerStartError, spawn, stop_process, wait_ready

_START_ATTEMPTS = 3


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if the server at ``host:port`` answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """redis-server in the foreground on 127.0.0.1, ``--save "" --appendonly no``, in ``workdir``.

    ``restart()`` keeps the port, so fault tests can drop Redis under a running client.
    """

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self.log_path = self.workdir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        """PID of the running redis-server."""
        if self._proc is None:
            raise RuntimeError("redis-server is not running")
        return self._proc.pid

    def start(self) -> RedisServer:
        """Start redis-server and wait until it answers PING; retry on a port lost to a race."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_START_ATTEMPTS):
            try:
                self._start_once()
                return self
            except ServerStartError:
                if self._fixed_port or attempt == _START_ATTEMPTS - 1:
                    raise
                self.port = free_port(self.host)
        return self  # pragma: no cover - the loop returns or raises

    def _start_once(self) -> None:
        argv = [
            "redis-server",
            "--bind", self.host,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        self._proc = spawn(argv, self.log_path)
        wait_ready(
            self._proc,
            lambda: redis_ping(self.host, self.port),
            what=f"redis-server on port {self.port}",
            log_path=self.log_path,
        )

    def stop(self) -> None:
        """Stop redis-server by its PID (SIGTERM, then SIGKILL). Idempotent."""
        stop_process(self._proc)

    def restart(self) -> None:
        """Stop, then start again on the same port (data is lost: there is no persistence)."""
        self.stop()
        self._start_once()

    def __enter__(self) -> RedisServer:
        return self if self._proc is not None and self._proc.poll() is None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""A throwaway redis-server on a free loopback port, with no persistence, stopped by PID."""

from __future__ import annotations

import socket

from harness.process import LocalServer, spawn, wait_ready


def redis_ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if the server at ``host:port`` answers ``PING`` with ``+PONG``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(LocalServer):
    """redis-server in the foreground on 127.0.0.1, ``--save "" --appendonly no``, in ``workdir``.

    ``restart()`` keeps the port, so fault tests can drop Redis under a running client.
    """

    name = "redis-server"
    log_name = "redis.log"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

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

    def restart(self) -> None:
        """Stop, then start again on the same port (data is lost: there is no persistence)."""
        self.stop()
        self._start_once()

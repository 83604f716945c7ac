"""Free loopback ports for test servers, and a check that a port accepts connections."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listened on a moment ago.

    The kernel picks the port (bind to 0), so it never collides with a service on a standard
    port. Another process may still grab it before the caller binds it; servers started on an
    automatically chosen port therefore retry with a fresh one when their bind fails.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts_connections(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

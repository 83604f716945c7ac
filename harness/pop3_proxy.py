"""A fault-injecting TCP proxy in front of a real POP3 server's plain port, for tests.

It reads the client's command stream line by line, so it cannot work inside TLS: point an
account with ``security: plain`` and ``allow_plaintext: true`` at it. Each command is
forwarded and its whole reply read from the server before it is relayed, which POP3 allows
because a client that does not pipeline (ours) is strictly lock-step: the reply to a command
is its status line and, for a multi-line ``+OK``, the lines up to ``.``. A :class:`Fault`
changes what happens to the n-th occurrence of one command, counted over the proxy's life
(so a later poll through the same proxy runs clean once the faults are spent):

- ``RESET``: drop both connections before forwarding; the server never sees the command.
- ``CUT``: forward, relay the first ``after_bytes`` bytes of the reply, drop both sides
  (``after_bytes=0`` on QUIT: the server committed, the client never sees ``+OK``).
- ``STALL``: forward, relay ``after_bytes`` bytes, then nothing until the client leaves.
- ``REPLY``: answer ``reply`` (e.g. ``-ERR [SYS/TEMP] try later``) without forwarding.
- ``REWRITE``: forward, relay ``rewrite(reply)`` (see :func:`duplicate_uidl`).

Drops are TCP resets (``SO_LINGER`` 0) unless ``rst=False`` asks for an orderly close.
A :class:`Trickle` makes every server-to-client write go out a few bytes at a time, and
``expire_zero`` emulates a server with ``EXPIRE 0`` (RFC 2449), which consumes every
message retrieved in a session at QUIT, DELE or not: before QUIT, the proxy DELEs them.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Self

from harness.ports import free_port
from harness.process import Managed

_LIMIT = 1 << 24  # longest line the proxy buffers
_ALWAYS_MULTILINE = {"CAPA", "RETR", "TOP"}
_MULTILINE_WITHOUT_ARG = {"LIST", "UIDL"}
_BIND_ATTEMPTS = 3


class Action(Enum):
    """What a matching :class:`Fault` does to its command (see the module docstring)."""

    RESET = "reset"
    CUT = "cut"
    STALL = "stall"
    REPLY = "reply"
    REWRITE = "rewrite"


@dataclass(frozen=True, slots=True)
class Fault:
    """Apply ``action`` to occurrences ``nth`` .. ``nth + times - 1`` of ``command``.

    ``after_bytes`` is a slice end: a negative value counts from the end of the reply.
    """

    command: str
    action: Action
    nth: int = 1
    times: int = 1
    after_bytes: int = 0
    reply: bytes = b""
    rewrite: Callable[[bytes], bytes] | None = None
    rst: bool = True

    def matches(self, command: str, occurrence: int) -> bool:
        return command == self.command.upper() and self.nth <= occurrence < self.nth + self.times


@dataclass(frozen=True, slots=True)
class Trickle:
    """Relay server bytes ``chunk`` at a time with ``delay`` seconds between chunks."""

    chunk: int = 16
    delay: float = 0.001


class _Dropped(Exception):
    """Internal: a fault ended the connection; ``rst`` says how."""

    def __init__(self, rst: bool) -> None:
        super().__init__("dropped")
        self.rst = rst


def duplicate_uidl(copy_from: int = 1, onto: int = 2) -> Callable[[bytes], bytes]:
    """A ``REWRITE`` for ``UIDL``: message ``onto`` is listed with the UIDL of ``copy_from``."""

    def rewrite(reply: bytes) -> bytes:
        lines = reply.split(b"\r\n")
        uidls = dict(line.split(b" ", 1) for line in lines[1:] if b" " in line)
        source = uidls[b"%d" % copy_from]
        return b"\r\n".join(
            b"%d %s" % (onto, source) if line.startswith(b"%d " % onto) else line for line in lines
        )

    return rewrite


def drop_capability(name: bytes) -> Callable[[bytes], bytes]:
    """A ``REWRITE`` for ``CAPA``: the capability ``name`` (e.g. ``b"TOP"``) is not offered."""

    def rewrite(reply: bytes) -> bytes:
        lines = reply.split(b"\r\n")
        return b"\r\n".join(line for line in lines if line.split(b" ")[0].upper() != name)

    return rewrite


def _drop(writer: asyncio.StreamWriter, *, rst: bool) -> None:
    """Close one side: a TCP reset (unsent bytes discarded) or an orderly FIN."""
    if rst:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


async def _read_reply(reader: asyncio.StreamReader, *, multiline: bool) -> bytes:
    """One complete reply: the status line, plus the body and ``.`` line if multi-line."""
    reply = await reader.readuntil(b"\r\n")
    if multiline and reply.startswith(b"+OK"):
        while (line := await reader.readuntil(b"\r\n")) != b".\r\n":
            reply += line
        reply += line
    return reply


@dataclass(slots=True)
class _Conn:
    client_r: asyncio.StreamReader
    client_w: asyncio.StreamWriter
    server_r: asyncio.StreamReader
    server_w: asyncio.StreamWriter
    retrieved: set[int] = field(default_factory=set)  # message numbers RETRieved

    def close(self, *, rst: bool) -> None:
        for writer in (self.client_w, self.server_w):
            if not writer.is_closing():
                _drop(writer, rst=rst)


class Pop3FaultProxy(Managed):
    """Listens on ``127.0.0.1:port`` (a free port) and forwards to ``upstream_host:port``.

    A context manager: the event loop runs in a background thread from ``__enter__`` until
    ``__exit__``, which ends every connection and joins the thread. ``commands`` counts the
    commands clients sent; ``fired`` lists ``"COMMAND#n:action"`` for each fault applied,
    so a test can prove that its fault happened.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        faults: list[Fault] | None = None,
        *,
        trickle: Trickle | None = None,
        expire_zero: bool = False,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.faults = list(faults or [])
        self.trickle = trickle
        self.expire_zero = expire_zero
        self.port = 0
        self.connections = 0
        self.fired: list[str] = []
        self.commands: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="pop3-fault-proxy", daemon=True)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the POP3 fault proxy did not start within 10 s")
        if self._error is not None:
            self._thread.join()
            raise RuntimeError("the POP3 fault proxy failed to start") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("the POP3 fault proxy thread did not stop")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # noqa: BLE001 - reported to the starting thread
            self._error = err
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await self._listen()
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self) -> asyncio.Server:
        for attempt in range(_BIND_ATTEMPTS):
            port = free_port(self.host)
            try:
                server = await asyncio.start_server(self._serve, self.host, port, limit=_LIMIT)
            except OSError:
                if attempt == _BIND_ATTEMPTS - 1:
                    raise
                continue
            self.port = port
            return server
        raise AssertionError("unreachable")  # pragma: no cover

    # -- one connection -----------------------------------------------------

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream, limit=_LIMIT)
        except OSError:
            _drop(client_w, rst=True)
        else:
            await self._session(_Conn(client_r, client_w, server_r, server_w))
        finally:
            self._tasks.discard(task)

    async def _session(self, conn: _Conn) -> None:
        rst = False
        try:
            await self._relay(conn, await _read_reply(conn.server_r, multiline=False))
            while line := await conn.client_r.readline():
                await self._command(conn, line)
        except _Dropped as dropped:
            rst = dropped.rst
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            conn.close(rst=rst)

    async def _command(self, conn: _Conn, line: bytes) -> None:
        verb, _, arg = line.strip().partition(b" ")
        command = verb.decode("ascii", "replace").upper()
        self.commands[command] += 1
        nth = self.commands[command]
        fault = next((f for f in self.faults if f.matches(command, nth)), None)
        if fault is not None:
            self.fired.append(f"{command}#{nth}:{fault.action.value}")
        if fault is not None and fault.action is Action.REPLY:
            await self._relay(conn, fault.reply.rstrip(b"\r\n") + b"\r\n")
            return
        if fault is not None and fault.action is Action.RESET:
            raise _Dropped(fault.rst)
        if command == "QUIT" and self.expire_zero:
            await self._consume_retrieved(conn)
        conn.server_w.write(line)
        multiline = command in _ALWAYS_MULTILINE or (
            command in _MULTILINE_WITHOUT_ARG and not arg.strip()
        )
        reply = await _read_reply(conn.server_r, multiline=multiline)
        if command == "RETR" and reply.startswith(b"+OK") and arg.strip().isdigit():
            conn.retrieved.add(int(arg))
        await self._apply(conn, fault, reply)

    async def _consume_retrieved(self, conn: _Conn) -> None:
        """``EXPIRE 0``: what was retrieved in this session goes at QUIT, DELE or not."""
        for number in sorted(conn.retrieved):
            conn.server_w.write(b"DELE %d\r\n" % number)
            await _read_reply(conn.server_r, multiline=False)  # -ERR if DELEd already

    async def _apply(self, conn: _Conn, fault: Fault | None, reply: bytes) -> None:
        if fault is None:
            await self._relay(conn, reply)
        elif fault.action is Action.REWRITE:
            assert fault.rewrite is not None, "a REWRITE fault needs a rewrite function"
            await self._relay(conn, fault.rewrite(reply))
        else:
            await self._relay(conn, reply[: fault.after_bytes])
            if fault.action is Action.STALL:
                await conn.client_r.read()  # hold the rest back until the client gives up
            raise _Dropped(fault.rst)

    async def _relay(self, conn: _Conn, data: bytes) -> None:
        """Send ``data`` to the client, trickled if configured, and wait until it is written."""
        step = self.trickle.chunk if self.trickle else max(len(data), 1)
        for start in range(0, len(data), step):
            conn.client_w.write(data[start : start + step])
            await conn.client_w.drain()
            if self.trickle:
                await asyncio.sleep(self.trickle.delay)

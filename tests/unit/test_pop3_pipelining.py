"""How pipelined commands go out: together, never left unsent while a reply is awaited."""

from __future__ import annotations

from collections import deque

import pytest

from ingest.model import MailboxEntry
from ingest.pop3 import Pop3Session
from ingest.pop3_auth import Credentials
from ingest.pop3_wire import Endpoint


class _InstantServer:
    """A socket whose server answers every command at once: each ``recv`` returns the
    replies to every command sent and not yet answered. It records every write."""

    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []
        self.unanswered: deque[bytes] = deque()
        self.most_waiting = 0  # most commands ever sent and not yet answered

    def sendall(self, data: bytes) -> None:
        commands = [line for line in data.split(b"\r\n") if line]
        self.writes.append(commands)
        self.unanswered.extend(commands)
        self.most_waiting = max(self.most_waiting, len(self.unanswered))

    def recv(self, size: int) -> bytes:
        assert self.unanswered, "the client awaits a reply to a command it has not sent"
        replies = []
        while self.unanswered:
            verb, _, number = self.unanswered.popleft().partition(b" ")
            if verb == b"RETR":
                replies.append(b"+OK\r\nSubject: %s\r\n\r\nbody\r\n.\r\n" % number)
            elif verb == b"CAPA":
                replies.append(b"+OK\r\nPIPELINING\r\nEXPIRE 30\r\n.\r\n")
            else:
                replies.append(b"+OK\r\n")
        return b"".join(replies)

    def close(self) -> None:
        pass


def _session(window: int, pipelining: bool = True) -> tuple[Pop3Session, _InstantServer]:
    session = Pop3Session(Endpoint("127.0.0.1", 110, "plain"), window=window)
    server = _InstantServer()
    session._sock = server  # type: ignore[assignment]
    session.capabilities = {"PIPELINING": ""} if pipelining else {}
    return session, server


@pytest.mark.parametrize("window", [2, 8, 32])
def test_retr_and_dele_go_out_in_batches_and_every_reply_comes(window: int) -> None:
    session, server = _session(window)
    entries = [MailboxEntry(n, f"u{n}", 30) for n in range(1, 101)]
    got = []
    for entry, spool in session.retrieve_many(entries):
        assert not isinstance(spool, Exception)
        got.append((entry.number, spool.read()))
        session.delete(entry)
    session.drain()
    assert [n for n, _ in got] == list(range(1, 101))
    assert all(body == b"Subject: %d\r\n\r\nbody\r\n" % n for n, body in got)
    sent = [command for write in server.writes for command in write]
    assert sorted(c for c in sent if c.startswith(b"RETR")) == sorted(
        b"RETR %d" % n for n in range(1, 101)
    )
    assert len([c for c in sent if c.startswith(b"DELE")]) == 100
    assert server.most_waiting <= 2 * window  # a window of RETRs, and the DELEs among them
    if window >= 8:
        assert len(server.writes) < len(sent) / 2  # commands share writes


def test_without_pipelining_each_command_is_sent_alone_and_answered_first() -> None:
    session, server = _session(window=32, pipelining=False)
    entries = [MailboxEntry(n, f"u{n}", 30) for n in range(1, 6)]
    for entry, _ in session.retrieve_many(entries):
        session.delete(entry)
    assert all(len(write) == 1 for write in server.writes)
    assert server.most_waiting == 1


def test_queued_commands_go_out_once_half_a_window_or_less_is_outstanding() -> None:
    """Commands are not held back until the next read: with many replies already read
    into the buffer, the queue goes out as soon as no more than half a window of sent
    commands is still unanswered, so the server never waits a round trip for work."""
    window = 8
    session, server = _session(window)
    entries = [MailboxEntry(n, f"u{n}", 30) for n in range(1, 41)]
    for entry, _ in session.retrieve_many(entries):
        session.delete(entry)
        outstanding = len(session._inflight) - session._queued
        assert session._queued == 0 or outstanding > window // 2
    session.drain()
    assert not server.unanswered


@pytest.mark.parametrize("pipelining", [True, False])
def test_the_login_is_lock_step_even_where_the_server_pipelines(pipelining: bool) -> None:
    """USER, PASS and the post-login CAPA each wait for the reply before: pipelined, USER
    and PASS cost Dovecot's login a delayed-ACK stall, and a server that starts another
    process at login may lose what follows PASS."""
    session, server = _session(window=32, pipelining=pipelining)
    session.encrypted = True
    session.login(Credentials("password", "user", "secret"))
    assert server.writes == [[b"USER user"], [b"PASS secret"], [b"CAPA"]]
    assert session.capabilities == {"PIPELINING": "", "EXPIRE": "30"}  # the post-login list
    assert not server.unanswered

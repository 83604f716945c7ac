"""A POP3 client session (RFC 1939, 2449, 2595): STLS, CAPA, UIDL, pipelined RETR and DELE.

Protocol rules that everything else relies on:

- Nothing is deleted until QUIT: DELE only marks, and QUIT enters the UPDATE state
  in which the server removes the marked messages (and, with ``EXPIRE 0`` or Gmail's
  POP settings, may remove retrieved ones too).
- So after a failure we never send QUIT while something retrieved is not stored:
  :meth:`Pop3Session.abandon` drops the connection and the server commits nothing.
  :meth:`retrieved` tells which messages were retrieved (a RETR was *sent*).
- RETR returns the message with CRLF line endings; we strip the terminating ``.``
  line and undo dot-stuffing, and keep every other byte as sent.
- When the server advertises PIPELINING, up to ``window`` RETR commands are in flight
  and DELE does not wait for its reply; replies are matched to commands in order.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import structlog

from ingest.errors import PermanentError, ProtocolError, SecurityError
from ingest.failpoints import failpoint
from ingest.metrics import pop3_timed, pop3_timer
from ingest.model import MailboxEntry
from ingest.pop3_auth import Credentials, authenticate
from ingest.pop3_wire import Endpoint, Pop3Wire, error_for
from ingest.spool import Spool

__all__ = ["Endpoint", "Pop3Session", "open_session"]

_log = structlog.get_logger("ingest.pop3")
DEFAULT_WINDOW = 32


@dataclass(frozen=True, slots=True)
class _Pending:
    what: str
    number: int
    multiline: bool
    spool: Spool | None = None  # RETR replies stream into it


class Pop3Session(Pop3Wire):
    """One connected, authenticated POP3 session. Use :func:`open_session`."""

    def __init__(self, endpoint: Endpoint, window: int = DEFAULT_WINDOW) -> None:
        super().__init__(endpoint)
        self.capabilities: dict[str, str] = {}
        self.greeting = b""
        self.window = window
        self._retrieved: set[int] = set()
        self._inflight: deque[_Pending] = deque()
        self._refused_deletes: set[int] = set()
        self._uidl_reply: tuple[bytes | None] | None = None  # fingerprint()'s, for listing()

    @pop3_timed("connect")
    def connect(self) -> None:
        ep = self.endpoint
        self.open_socket()
        if ep.security == "tls":
            self.start_tls()
        self.greeting = self._expect_ok("greeting")
        if ep.security == "starttls":
            self.capa()
            if "STLS" not in self.capabilities:
                raise SecurityError(
                    f"{ep.host}:{ep.port} does not offer STLS; refusing to continue in plaintext"
                )
            self._expect_ok("STLS", b"STLS")
            self.start_tls()
        self.capa()

    @property
    def pipelining(self) -> bool:
        return "PIPELINING" in self.capabilities and self.window > 1

    # -- the in-flight queue ------------------------------------------------

    def _submit(self, what: str, number: int, multiline: bool) -> _Pending:
        self._queue(b"%s %d" % (what.encode(), number) + (b" 0" if what == "TOP" else b""))
        pending = _Pending(what, number, multiline, Spool() if what == "RETR" else None)
        self._inflight.append(pending)
        if len(self._inflight) - self._queued <= self.window // 2:
            self._flush()  # the server is running out of work: keep it busy over the wire
        return pending

    def _collect(self) -> tuple[_Pending, bytes]:
        """Read the reply to the oldest command in flight."""
        pending = self._inflight.popleft()
        reply = self._readline()
        if not reply.startswith(b"+OK"):
            err = error_for(reply, pending.what)
            if pending.what == "DELE" and isinstance(err, PermanentError):
                _log.warning("message.dele_refused", number=pending.number, reply=str(err))
                self._refused_deletes.add(pending.number)
                return pending, b""
            raise err
        if pending.spool is not None:
            with pop3_timer("retr"):  # one message's transfer: per message, never per line
                self._read_multiline_into(pending.spool.write)
            return pending, b""
        return pending, self._read_multiline() if pending.multiline else b""

    def _call(self, what: str, number: int, multiline: bool) -> tuple[_Pending, bytes]:
        """Send one command and return its reply (draining what is in flight first)."""
        self._submit(what, number, multiline)
        while len(self._inflight) > 1:
            self._collect()
        return self._collect()

    def drain(self) -> None:
        """Read every outstanding reply (before any non-pipelined command)."""
        while self._inflight:
            self._collect()

    # -- commands -----------------------------------------------------------

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

    @pop3_timed("login")
    def login(self, creds: Credentials) -> None:
        """Authenticate with the configured method (see :mod:`ingest.pop3_auth`)."""
        self._enable_utf8()
        authenticate(self, creds)
        # RFC 2449: capabilities (LOGIN-DELAY, EXPIRE) may change after login. Not pipelined
        # behind PASS: a server that starts another process for the session (mailfront
        # execs through checkpassword) loses what was sent after PASS, and the poll hangs.
        self.capa()

    def _enable_utf8(self) -> None:
        """RFC 6856 UTF8 (AUTHORIZATION state only) when offered: we store raw bytes, so
        messages with UTF-8 header fields must come as they are. Without it Courier serves
        such a message as a "Cannot display Unicode content" notice whose MIME boundary
        changes with every session, not the message. A refusal is logged, not fatal."""
        if "UTF8" not in self.capabilities:
            return
        self._send(b"UTF8")
        reply = self._readline()
        if not reply.startswith(b"+OK"):
            _log.warning("pop3.utf8_refused", reply=reply.decode("ascii", "replace")[:200])

    @pop3_timed("listing")
    def listing(self) -> list[MailboxEntry]:
        """UIDL + LIST joined by message number (UIDLs are checked by the caller).

        Messages of a server without UIDL, and messages whose UIDL the server lists more
        than once, get content-derived identities instead (see :meth:`_content_identities`).
        """
        self.drain()
        cached, self._uidl_reply = self._uidl_reply, None
        together = cached is None and self.pipelining
        self._queue(b"LIST")
        if together:
            self._queue(b"UIDL")  # one round trip for both
        self._expect_ok("LIST")
        sizes = self._parse_numbered("LIST", self._read_multiline())
        body = cached[0] if cached is not None else self._uidl(sent=together)
        if body is not None:
            uidls = self._parse_numbered("UIDL", body)
            derived = self._duplicates(uidls)
        else:
            uidls, derived = {}, set(sizes)
        uidls.update(self._content_identities({n: sizes.get(n, "") for n in derived}))
        entries = []
        for number, uidl in uidls.items():
            if number not in sizes or not sizes[number].isdigit():
                raise ProtocolError(f"LIST has no size for message {number}")
            entries.append(MailboxEntry(number, uidl, int(sizes[number]), number in derived))
        return sorted(entries, key=lambda e: e.number)

    def _uidl(self, *, sent: bool = False) -> bytes | None:
        """The UIDL listing as the server sent it, or None (logged) when it has none."""
        if not sent:
            self._send(b"UIDL")
        reply = self._readline()
        if reply.startswith(b"+OK"):
            return self._read_multiline()
        text = reply[:200].decode("utf-8", "replace")
        _log.warning("mailbox.no_uidl", host=self.endpoint.host, reply=text)
        return None

    @pop3_timed("fingerprint")
    def fingerprint(self) -> str | None:
        """SHA-256 of ``STAT`` (message count and total size) and the ``UIDL`` listing: equal
        fingerprints mean the same messages under the same UIDLs, with (all but certainly)
        the same sizes. None without UIDL. A later :meth:`listing` reuses the UIDL listing."""
        self.drain()
        together = self.pipelining
        self._queue(b"STAT")
        if together:
            self._queue(b"UIDL")
        stat = self._expect_ok("STAT")
        body = self._uidl(sent=together)
        self._uidl_reply = (body,)
        if body is None:
            return None
        return hashlib.sha256(stat + b"\r\n" + body).hexdigest()

    def _duplicates(self, uidls: dict[int, str]) -> set[int]:
        """Numbers of messages whose UIDL is listed more than once (popa3d, Dovecot)."""
        counts = Counter(uidls.values())
        dupes = {n for n, u in uidls.items() if counts[u] > 1}
        if dupes:
            _log.warning("mailbox.duplicate_uidl", host=self.endpoint.host, numbers=sorted(dupes))
        return dupes

    def _content_identities(self, sizes: dict[int, str]) -> dict[int, str]:
        """Identities for a server without UIDL: ``sha-`` + SHA-256 of the header block
        (``TOP n 0``; the whole message when TOP is missing too), truncated to 40 hex
        digits; a repeat of the same headers gets ``.2``, ``.3``... in listing order."""
        out: dict[int, str] = {}
        seen: dict[str, int] = {}
        for number in sorted(sizes):
            entry = MailboxEntry(number, "", 0)
            head = self.headers(entry)
            full = hashlib.sha256(head).hexdigest() if head is not None else None
            if full is None:
                spool = self.retrieve(entry)
                full = spool.sha256
                spool.close()
            digest = "sha-" + full[:40]
            seen[digest] = seen.get(digest, 0) + 1
            out[number] = digest if seen[digest] == 1 else f"{digest}.{seen[digest]}"
        return out

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

    def retrieve(self, entry: MailboxEntry) -> Spool:
        self._retrieved.add(entry.number)
        pending, _ = self._call("RETR", entry.number, multiline=True)
        assert pending.spool is not None
        return pending.spool

    def retrieve_many(
        self, entries: Iterable[MailboxEntry]
    ) -> Iterator[tuple[MailboxEntry, Spool | PermanentError]]:
        """RETR each entry, keeping up to ``window`` in flight when the server pipelines.

        A permanent ``-ERR`` for one message is yielded in place of its bytes, so the
        others keep flowing. Other commands (DELE) may be issued between items; their
        replies are read in turn.
        """
        window = self.window if self.pipelining else 1
        queue: deque[MailboxEntry] = deque()
        for entry in entries:
            self._retrieved.add(entry.number)
            self._submit("RETR", entry.number, multiline=True)
            queue.append(entry)
            if len(queue) >= window:
                yield self._next_retr(queue)
        while queue:
            yield self._next_retr(queue)

    def _next_retr(self, queue: deque[MailboxEntry]) -> tuple[MailboxEntry, Spool | PermanentError]:
        while self._inflight[0].what != "RETR":
            self._collect()
        entry = queue.popleft()
        try:
            pending, _ = self._collect()
        except PermanentError as err:
            return entry, err
        assert pending.spool is not None and pending.number == entry.number
        return entry, pending.spool

    def retrieved(self) -> set[int]:
        return set(self._retrieved)

    def headers(self, entry: MailboxEntry) -> bytes | None:
        """``TOP n 0``: the header block, or None when the server does not offer TOP."""
        if "TOP" not in self.capabilities:
            return None
        return self._call("TOP", entry.number, multiline=True)[1]

    def delete(self, entry: MailboxEntry) -> None:
        """DELE; pipelined when possible. A permanent refusal shows in :meth:`refused_deletes`."""
        if self.pipelining:
            self._submit("DELE", entry.number, multiline=False)
        else:
            self._call("DELE", entry.number, multiline=False)

    def refused_deletes(self) -> set[int]:
        """Messages whose DELE the server refused with a permanent ``-ERR`` (they stay)."""
        return set(self._refused_deletes)

    @pop3_timed("quit")
    def commit(self) -> None:
        """QUIT: the server enters UPDATE and removes the messages marked with DELE.

        Sent only once every DELE has its reply (one round trip more than pipelining it):
        a DELE refused with a temporary error fails the poll before QUIT, which then
        commits nothing."""
        try:
            self.drain()
            self._send(b"QUIT")
            failpoint("after_quit_sent")
            self._expect_ok("QUIT")
        finally:
            self.close()

    def reset_and_quit(self) -> None:
        """RSET + QUIT: unmark everything, then leave politely. Only when nothing is at risk."""
        try:
            self.drain()
            self._expect_ok("RSET", b"RSET")
            self._expect_ok("QUIT", b"QUIT")
        finally:
            self.close()

    def abandon(self) -> None:
        """Drop the connection without QUIT: the server commits nothing at all."""
        self.close()


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

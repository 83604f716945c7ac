"""The test harness itself: real Redis, moto S3 and Dovecot behave as the other tests assume."""

from __future__ import annotations

import poplib
import secrets
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness import Dovecot, MailUser, MotoS3, RedisServer, as_pop3, corpus_files, listed_size
from harness.process import pid_alive, processes_titled
from harness.redis_server import redis_ping

# Synthetic messages for line-ending edge cases the corpus covers only partly.
EDGE_CASES = [
    b"",
    b"a",
    b"a\n",
    b"a\r\n",
    b"a\r",
    b"a\rb\n",
    b"a\r\r\n",
    b"\r",
    b"\n\n",
    b"x\n.\n..\n.y\n",
    b"x\n.",
    b"a\x00b\n",
    b"\x80\xff\n",
    b"Subject: x\r\n\r\nmixed\nendings\r\n",
]


class RawPop3:
    """Just enough POP3 over a socket to see the exact bytes of a RETR response."""

    def __init__(self, dovecot: Dovecot, user: MailUser) -> None:
        self.sock = socket.create_connection((dovecot.host, dovecot.pop3_port), timeout=10)
        self.file = self.sock.makefile("rb")
        self._status()
        self.command(f"USER {user.name}")
        self.command(f"PASS {user.password}")

    def _status(self) -> bytes:
        line = self.file.readline()
        assert line.startswith(b"+OK"), line
        return line

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self._status()

    def wire_lines(self) -> list[bytes]:
        """Lines of a multi-line response as sent, CRLF kept, up to the terminating '.'."""
        lines = []
        while (line := self.file.readline()) != b".\r\n":
            assert line, "connection closed inside a multi-line response"
            lines.append(line)
        return lines

    def retr(self, number: int) -> bytes:
        """The message, dot-unstuffed, every byte as received."""
        self.command(f"RETR {number}")
        return b"".join(line[1:] if line.startswith(b".") else line for line in self.wire_lines())

    def sizes(self) -> list[int]:
        self.command("LIST")
        return [int(line.split()[1]) for line in self.wire_lines()]

    def close(self) -> None:
        self.command("QUIT")
        self.file.close()
        self.sock.close()


@contextmanager
def raw_pop3(dovecot: Dovecot, user: MailUser) -> Iterator[RawPop3]:
    """A logged-in RawPop3 session, QUIT at the end (POP3 sees mail present at login)."""
    client = RawPop3(dovecot, user)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def spare_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of its own, for tests that stop it."""
    workdir = Path(tempfile.mkdtemp(prefix="ingest-dovecot-"))
    with Dovecot(workdir) as server:
        yield server
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def long_pop3_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Some corpus messages have lines longer than poplib's default 2048-byte limit."""
    monkeypatch.setattr(poplib, "_MAXLINE", 10 * 1024 * 1024)


def tls_context(dovecot: Dovecot) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(dovecot.ca_file))
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    return context


def test_redis_answers_ping_and_stop_kills_the_pid(tmp_path: Path) -> None:
    """A RedisServer answers PING on its own port, and stop() ends that very process."""
    server = RedisServer(tmp_path).start()
    assert server.port != 6379
    assert redis_ping(server.host, server.port)
    pid = server.pid
    server.stop()
    server.stop()
    assert not pid_alive(pid)
    assert not redis_ping(server.host, server.port)


def test_redis_restart_keeps_the_port(tmp_path: Path) -> None:
    """restart() brings up a new redis-server process on the same port."""
    with RedisServer(tmp_path) as server:
        port, pid = server.port, server.pid
        server.restart()
        assert (server.port, redis_ping(server.host, port)) == (port, True)
        assert server.pid != pid
        assert not pid_alive(pid)


def test_redis_url_starts_empty(redis_url: str) -> None:
    """The redis_url fixture points at the session server, flushed before each test."""
    import redis  # noqa: PLC0415

    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0
        client.set("left-behind", "1")


def test_moto_round_trips_an_object(s3_server: MotoS3, bucket: str) -> None:
    """An object put into the moto S3 server comes back byte for byte."""
    body = secrets.token_bytes(4096)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="a/b.eml", Body=body)
    assert client.get_object(Bucket=bucket, Key="a/b.eml")["Body"].read() == body
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")


def test_dovecot_plain_login(dovecot: Dovecot, mail_user: MailUser) -> None:
    """USER/PASS on the plain port logs a freshly added user into an empty mailbox."""
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        assert "STLS" in pop.capa()
        pop.user(mail_user.name)
        pop.pass_(mail_user.password)
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_dovecot_stls_verifies_against_ca(
    dovecot: Dovecot, mail_user: MailUser, hostname: str
) -> None:
    """STLS upgrades to TLS whose certificate verifies against ca_file, hostname checked."""
    pop = poplib.POP3(hostname, dovecot.pop3_port, timeout=10)
    try:
        pop.stls(tls_context(dovecot))
        pop.user(mail_user.name)
        pop.pass_(mail_user.password)
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


@pytest.mark.parametrize("hostname", ["localhost", "127.0.0.1"])
def test_dovecot_implicit_tls_verifies_against_ca(
    dovecot: Dovecot, mail_user: MailUser, hostname: str
) -> None:
    """The pop3s port speaks TLS at once, with a certificate that verifies against ca_file."""
    pop = poplib.POP3_SSL(hostname, dovecot.pop3s_port, timeout=10, context=tls_context(dovecot))
    try:
        pop.user(mail_user.name)
        pop.pass_(mail_user.password)
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


def test_dovecot_certificate_fails_for_another_name(dovecot: Dovecot) -> None:
    """Hostname checking is real: the certificate does not pass for a name it lacks."""
    with (
        socket.create_connection((dovecot.host, dovecot.pop3s_port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        tls_context(dovecot).wrap_socket(sock, server_hostname="mail.example.com")


def test_dovecot_refuses_a_wrong_password(dovecot: Dovecot, mail_user: MailUser) -> None:
    """PASS with the wrong password gets -ERR [AUTH]."""
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=10)
    try:
        pop.user(mail_user.name)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            pop.pass_(mail_user.password + "x")
    finally:
        pop.quit()


def test_every_corpus_message_retrs_as_as_pop3_predicts(
    dovecot: Dovecot, mail_user: MailUser
) -> None:
    """Each corpus file delivered to Dovecot comes back from RETR byte-exactly as as_pop3()."""
    files = corpus_files()
    assert len(files) >= 150
    raws = [path.read_bytes() for path in files]
    for raw in raws:
        dovecot.deliver(mail_user.name, raw)
    assert dovecot.message_count(mail_user.name) == len(raws)
    with raw_pop3(dovecot, mail_user) as client:
        assert client.sizes() == [listed_size(raw) for raw in raws]
        wrong = [
            path.name
            for number, (path, raw) in enumerate(zip(files, raws, strict=True), start=1)
            if client.retr(number) != as_pop3(raw)
        ]
    assert wrong == []


def test_edge_cases_retr_as_as_pop3_predicts(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Bare CR, CR CR LF, NUL, dot lines, empty and unterminated messages match as_pop3()."""
    for raw in EDGE_CASES:
        dovecot.deliver(mail_user.name, raw)
    with raw_pop3(dovecot, mail_user) as client:
        assert client.sizes() == [listed_size(raw) for raw in EDGE_CASES]
        got = [client.retr(number) for number in range(1, len(EDGE_CASES) + 1)]
    assert got == [as_pop3(raw) for raw in EDGE_CASES]


def test_dovecot_does_not_dot_stuff_a_leading_dot(dovecot: Dovecot, mail_user: MailUser) -> None:
    """Dovecot 2.3 sends a message's first line unstuffed, so as_pop3 refuses a leading dot."""
    dovecot.deliver(mail_user.name, b".x\nbody\n")
    with raw_pop3(dovecot, mail_user) as client:
        client.command("RETR 1")
        assert client.wire_lines() == [b".x\r\n", b"body\r\n"]
    with pytest.raises(ValueError, match="leading"):
        as_pop3(b".x\nbody\n")


def test_dovecot_stop_leaves_no_processes(spare_dovecot: Dovecot) -> None:
    """stop() ends the master and every child, even with a POP3 session still open."""
    user = spare_dovecot.add_user("alice", "secret")
    pop = poplib.POP3(spare_dovecot.host, spare_dovecot.pop3_port, timeout=10)
    pop.user(user.name)
    pop.pass_(user.password)
    master, children = spare_dovecot.pid, spare_dovecot.child_pids()
    assert len(children) >= 4  # log, config, auth, pop3-login, pop3, ...
    spare_dovecot.stop()
    spare_dovecot.stop()
    pop.sock.close()
    assert [pid for pid in {master, *children} if pid_alive(pid)] == []
    assert processes_titled(f"dovecot-{spare_dovecot.instance}/") == set()


def test_dovecot_starts_again_on_the_same_ports(spare_dovecot: Dovecot) -> None:
    """After stop(), start() brings Dovecot back on the same ports with users and mail kept."""
    user = spare_dovecot.add_user("bob", "secret")
    spare_dovecot.deliver(user.name, b"Subject: kept\n\nbody\n")
    ports = (spare_dovecot.pop3_port, spare_dovecot.pop3s_port)
    spare_dovecot.stop()
    spare_dovecot.start()
    assert (spare_dovecot.pop3_port, spare_dovecot.pop3s_port) == ports
    with raw_pop3(spare_dovecot, user) as client:
        assert client.retr(1) == as_pop3(b"Subject: kept\n\nbody\n")

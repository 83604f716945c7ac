"""The checks every interoperability suite runs against its POP3 server, in one place.

A server object (``harness.popa3d.Popa3d``, ``harness.solid_pop3d.SolidPop3d``, ...) has
``host``, ``pop3_port`` (plain and STLS), ``pop3s_port`` (implicit TLS), ``ca_file``,
``security_modes``, ``deliver(user, raw)``, ``message_count(user)`` and ``wait_idle()``.
What a server serves is read with the standard library's poplib, independent of our client;
the poll runs as ``ingest poll`` in a real process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import poplib
import shutil
import ssl
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from support import bucket_objects, password_env, run_cli, split_objects, write_config

from harness import MailUser, MotoS3, corpus_files
from ingest.pop3 import Endpoint

#: Hard cases for every server: dots, From lines, CR and LF mixes, a long line, no final
#: newline. Each has its own Message-ID (some servers derive UIDLs from header fields).
MESSAGES = [
    b"From: a@example.com\nMessage-ID: <1@interop.test>\nSubject: one\n\nhello\n",
    b"From: b@example.com\r\nMessage-ID: <2@interop.test>\r\nSubject: two\r\n\r\n"
    b".a line starting with a dot\r\n.\r\n..two\r\nno final newline",
    b"From: c@example.com\nMessage-ID: <3@interop.test>\nSubject: three\n\n"
    b"From me\n>From you\n" + b"y" * 5000 + b"\n",
    b"From: d@example.com\nMessage-ID: <4@interop.test>\nSubject: four\n\n"
    b"bare\rCR, CR CR LF\r\r\nend\n",
    b"From: e@example.com\nMessage-ID: <5@interop.test>\nSubject: =?utf-8?q?f=C3=BCnf?=\n"
    b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
    b"f\xc3\xbcnf \xe2\x82\xac\n\n\n",
]


def corpus_sample() -> list[bytes]:
    """Every 16th message of the shared corpus (real-world MIME, 8-bit, odd headers)."""
    return [path.read_bytes() for path in corpus_files()[::16]]


class Server(Protocol):
    host: str
    security_modes: tuple[str, ...]

    @property
    def pop3_port(self) -> int: ...
    @property
    def pop3s_port(self) -> int: ...
    @property
    def ca_file(self) -> Path | None: ...
    def deliver(self, user: str, raw: bytes) -> None: ...
    def message_count(self, user: str) -> int: ...
    def wait_idle(self, timeout: float = 10.0) -> None: ...


@contextlib.contextmanager
def private_server(missing: str, prefix: str, make: Callable[[Path], Any]) -> Iterator[Any]:
    """``make(workdir)`` started in a fresh mkdtemp workdir (traversable by the sessions'
    users, unlike pytest's tmp_path), stopped and removed after.

    ``missing`` says why the server cannot run. Without root that is a skip (the servers
    need system users); as root it is a failure, because `make test` (scripts/
    private-servers.sh) unpacks every server first: a broken set-up must not pass silently.
    """
    if missing and os.geteuid() == 0:
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with make(workdir) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def account_for(server: Server, user: MailUser, security: str, **extra: Any) -> dict[str, Any]:
    """A config entry for ``user`` over ``security`` (password in INGEST_PW_<NAME>)."""
    name = extra.pop("name", "support")
    entry: dict[str, Any] = {
        "name": name,
        "host": "localhost",
        "port": server.pop3s_port if security == "tls" else server.pop3_port,
        "security": security,
        "username": user.name,
        "password_env": password_env(name),
        "timeout": 20,
        "allow_private_network": True,
    }
    if security == "plain":
        entry["allow_plaintext"] = True
    if server.ca_file is not None:
        entry["ca_file"] = str(server.ca_file)
    return {**entry, **extra}


@contextlib.contextmanager
def _poplib(
    server: Server, user: MailUser, security: str, utf8: bool = True
) -> Iterator[poplib.POP3]:
    """A logged-in poplib session (long lines allowed; RFC 6856 UTF8 mode when offered,
    unless ``utf8`` is false); QUIT at the end."""
    context = ssl.create_default_context(cafile=server.ca_file) if server.ca_file else None
    saved, poplib._MAXLINE = poplib._MAXLINE, 1 << 24  # type: ignore[attr-defined]
    try:
        port = server.pop3s_port if security == "tls" else server.pop3_port
        if security == "tls":
            pop: poplib.POP3 = poplib.POP3_SSL("localhost", port, timeout=20, context=context)
        else:
            pop = poplib.POP3("localhost", port, timeout=20)
        if security == "starttls":
            pop.stls(context)
        if utf8 and "UTF8" in _capabilities(pop):
            pop.utf8()
        try:
            pop.user(user.name)
            pop.pass_(user.password)
            yield pop
        finally:
            pop.quit()
    finally:
        poplib._MAXLINE = saved  # type: ignore[attr-defined]
    server.wait_idle()


def _capabilities(pop: poplib.POP3) -> dict[str, list[str]]:
    try:
        return pop.capa()
    except poplib.error_proto:  # no CAPA (popa3d, solid-pop3d)
        return {}


def served(
    server: Server, user: MailUser, security: str, utf8: bool = True
) -> list[tuple[str | None, bytes]]:
    """(UIDL or None, RETR bytes with CRLF lines, dot-unstuffed) of each message; RSET."""
    with _poplib(server, user, security, utf8) as pop:
        count = pop.stat()[0]
        try:
            uidls = [line.decode().split()[1] for line in pop.uidl()[1]]
        except poplib.error_proto:
            uidls = [None] * count
        found: list[tuple[str | None, bytes]] = []
        for number, uidl in enumerate(uidls, 1):
            lines = pop.retr(number)[1]
            found.append((uidl, b"".join(line + b"\r\n" for line in lines)))
        pop.rset()
    return found


def _poll(cfg: Path, password: str, name: str = "support") -> str:
    """`ingest poll`, again while it is deferred (exit 75) by the LOGIN-DELAY the server
    announced at the last login (Courier: 10 s); it must then succeed."""
    deadline = time.monotonic() + 60
    while True:
        result = run_cli(cfg, "poll", name, env={password_env(name): password}, timeout=300)
        if result.returncode != 75 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def check_stores_exactly_and_empties(
    tmp_path: Path,
    server: Server,
    user: MailUser,
    security: str,
    *,
    s3: MotoS3,
    bucket: str,
    redis_url: str,
    messages: list[bytes] = MESSAGES,
    poll_password: str | None = None,
    **account: Any,
) -> list[tuple[str | None, bytes]]:
    """Deliver ``messages``; one delete-mode poll stores each exactly as RETR serves it, once,
    under its UIDL, and empties the mailbox; a second poll finds nothing. Returns what was
    served, for server-specific checks. ``poll_password`` (e.g. an APOP secret) is what the
    poll authenticates with, instead of the user's password."""
    for raw in messages:
        server.deliver(user.name, raw)
    before = served(server, user, security)
    assert len(before) == len(messages)
    acct = account_for(server, user, security, **account)
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3, bucket=bucket, accounts=[acct]
    )
    password = poll_password or user.password
    assert f"stored {len(messages)}" in _poll(cfg, password)
    objects = bucket_objects(s3, bucket)
    raws, docs = split_objects(objects)
    assert len(raws) == len(docs) == len(messages)
    stored = []
    for body in docs.values():
        doc = json.loads(body)
        raw = raws[doc["raw_key"]]
        assert hashlib.sha256(raw).hexdigest() == doc["sha256"]
        stored.append((doc["uidl"], raw))
    assert sorted(raw for _, raw in stored) == sorted(raw for _, raw in before)
    uidls = [uidl for uidl, _ in before]
    if None not in uidls and len(set(uidls)) == len(uidls):  # else identities are derived
        assert sorted(stored) == sorted(before)  # type: ignore[type-var]
    server.wait_idle()
    assert server.message_count(user.name) == 0
    assert "listed 0, fetched 0, stored 0" in _poll(cfg, password)
    assert bucket_objects(s3, bucket).keys() == objects.keys()
    return before


def check_keep_mode(
    tmp_path: Path, server: Server, user: MailUser, security: str, redis_url: str, **account: Any
) -> None:
    """delete: never stores each message once and leaves the mailbox as it was; the second
    poll retrieves nothing and stores nothing."""
    for raw in MESSAGES[:2]:
        server.deliver(user.name, raw)
    store = tmp_path / "keep-store"
    acct = account_for(server, user, security, delete="never", **account)
    cfg = write_config(tmp_path / "k.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    assert "stored 2" in _poll(cfg, user.password)
    second = _poll(cfg, user.password)
    assert "fetched 0, stored 0" in second and "already stored 2" in second, second
    server.wait_idle()
    assert server.message_count(user.name) == 2
    assert len(list(store.rglob("*.eml"))) == 2


def check_wrong_password(
    tmp_path: Path, server: Server, user: MailUser, security: str, redis_url: str, **account: Any
) -> None:
    """A refused password fails the poll with an AuthError naming the account (exit 1 and
    the error's "refused authentication", which only AuthError says); the secret never
    appears and the mailbox is untouched."""
    server.deliver(user.name, MESSAGES[0])
    acct = account_for(server, user, security, name="wrong-pw", **account)
    cfg = write_config(
        tmp_path / "w.yaml", redis_url=redis_url, directory=tmp_path / "w", accounts=[acct]
    )
    canary = "canary-" + hashlib.sha256(user.name.encode()).hexdigest()[:12]
    result = run_cli(cfg, "poll", "wrong-pw", env={password_env("wrong-pw"): canary})
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert "wrong-pw: failed:" in result.stderr, result.stderr
    assert "refused authentication" in result.stderr, result.stderr
    assert canary not in result.stdout + result.stderr
    server.wait_idle()
    assert server.message_count(user.name) == 1


def endpoint_for(server: Server, security: str) -> Endpoint:
    """Our client's endpoint for ``server`` over ``security`` (by name: certificates say
    localhost)."""
    port = server.pop3s_port if security == "tls" else server.pop3_port
    return Endpoint(
        "localhost", port, security, timeout=20, ca_file=server.ca_file,
        allow_plaintext=security == "plain", allow_private=True,
    )  # fmt: skip

"""Network faults between the worker and POP3 that Dovecot cannot produce by itself.

Each test polls through :class:`harness.pop3_proxy.Pop3FaultProxy` (plain POP3 in front of
the real Dovecot), then polls again straight to Dovecot over STLS with the same account
name, ledger and store. After each poll the store and the mailbox must together hold every
delivered message (nothing deleted unless stored), every stored raw must be byte-exact with
exactly one JSON beside it, and nothing else may be in the store; after the clean poll
everything is stored and the mailbox is empty.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, as_pop3
from harness.pop3_proxy import (
    Action,
    Fault,
    Pop3FaultProxy,
    Trickle,
    drop_capability,
    duplicate_uidl,
)
from harness.ports import accepts_connections
from ingest.config_load import parse_settings
from ingest.errors import AuthError, TransientError
from ingest.service import poll_account

ACCOUNT = "faulty"
TIMEOUT = 2  # seconds per socket read, for the account


def _messages(token: str) -> list[bytes]:
    """Four distinct messages: plain, dot lines, large (~28 KB), bare CR/LF and 8-bit bytes."""
    head = b"From: a@example.com\nTo: b@example.com\nMessage-ID: <%d.%s@example.com>\n"
    big = b"".join(b"line %05d %s\n" % (i, b"x" * 60) for i in range(400))
    bodies = [
        b"Subject: plain\n\nfirst body\n",
        b"Subject: dots\n\n.leading dot\n.\n..two dots\nend\n",
        b"Subject: big\n\n" + big,
        b"Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\n\r\nbare\rcr, caf\xc3\xa9 and \xff\nno final eol",
    ]
    return [head % (i, token.encode()) + body for i, body in enumerate(bodies)]


@dataclass
class Rig:
    """One Dovecot user with four delivered messages, a store directory and a ledger."""

    tmp: Path
    redis_url: str
    dovecot: Dovecot
    user: MailUser
    delivered: list[bytes]  # as RETR returns them, in message-number order

    @property
    def expected(self) -> set[bytes]:
        return set(self.delivered)

    @property
    def store(self) -> Path:
        return self.tmp / "store"

    def account(self, proxy: Pop3FaultProxy | None) -> dict[str, Any]:
        """Plain through the proxy, or STLS straight to Dovecot when ``proxy`` is None."""
        if proxy is None:
            return account_entry(self.dovecot, self.user, name=ACCOUNT, timeout=TIMEOUT)
        return account_entry(
            self.dovecot,
            self.user,
            name=ACCOUNT,
            security="plain",
            allow_plaintext=True,
            host=proxy.host,
            port=proxy.port,
            timeout=TIMEOUT,
        )

    def config(self, proxy: Pop3FaultProxy | None) -> Path:
        name = "via-proxy.yaml" if proxy else "direct.yaml"
        accounts = [self.account(proxy)]
        return write_config(
            self.tmp / name, redis_url=self.redis_url, directory=self.store, accounts=accounts
        )

    def poll(self, proxy: Pop3FaultProxy | None = None) -> subprocess.CompletedProcess[str]:
        """``ingest poll`` as a real process, through ``proxy`` or straight to Dovecot."""
        env = {password_env(ACCOUNT): self.user.password}
        return run_cli(self.config(proxy), "poll", ACCOUNT, env=env, timeout=60)

    def poll_in_process(self, proxy: Pop3FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
        """``ingest.service.poll_account`` in this process, through ``proxy``."""
        monkeypatch.setenv(password_env(ACCOUNT), self.user.password)
        data = yaml.safe_load(self.config(proxy).read_text())
        poll_account(parse_settings(data, "in-process"), ACCOUNT)

    def on_server(self) -> list[bytes]:
        """What RETR would return for each message still in the mailbox."""
        maildir = self.dovecot.home(self.user.name) / "Maildir"
        files = [p for sub in ("new", "cur") for p in (maildir / sub).glob("*") if p.is_file()]
        return [as_pop3(p.read_bytes()) for p in files]

    def stored(self) -> dict[str, bytes]:
        """Raw objects by sha256, after checking the store's shape and the JSON beside each."""
        root = self.store / ACCOUNT
        files = sorted(p for p in self.store.rglob("*") if p.is_file())
        raws = {p.stem: p.read_bytes() for p in files if p.parent.parent == root / "raw"}
        docs = {p.stem: p.read_bytes() for p in files if p.parent.parent == root / "json"}
        assert len(files) == len(raws) + len(docs), f"stray files in the store: {files}"
        assert docs.keys() == raws.keys(), "every raw needs exactly one JSON, and vice versa"
        for sha, raw in raws.items():
            assert hashlib.sha256(raw).hexdigest() == sha
            assert (root / "raw" / sha[:2] / f"{sha}.eml").is_file()
            doc = json.loads(docs[sha])
            assert doc["sha256"] == sha and doc["raw_key"] == f"{ACCOUNT}/raw/{sha[:2]}/{sha}.eml"
        return raws

    def check(self, *, complete: bool = False) -> tuple[set[bytes], list[bytes]]:
        """The invariants; with ``complete``, also that everything is stored and deleted."""
        stored = set(self.stored().values())
        server = self.on_server()
        assert stored <= self.expected, "the store holds something that was never delivered"
        assert self.expected <= stored | set(server), "a message was deleted but not stored"
        assert len(server) == len(set(server)), "the mailbox holds a duplicate"
        if complete:
            assert stored == self.expected
            assert server == []
        return stored, server

    def finish(self) -> None:
        """A clean poll straight to Dovecot completes, and leaves everything stored once."""
        clean = self.poll()
        assert clean.returncode == 0, clean.stderr[-3000:]
        assert f"{ACCOUNT}: ok" in clean.stdout
        self.check(complete=True)


@pytest.fixture
def rig(tmp_path: Path, redis_url: str, dovecot: Dovecot, mail_user: MailUser) -> Rig:
    """Four messages delivered to a fresh user, in a known order (message numbers 1-4)."""
    raws = _messages(secrets.token_hex(4))
    for raw in raws:
        dovecot.deliver(mail_user.name, raw)
    return Rig(tmp_path, redis_url, dovecot, mail_user, [as_pop3(raw) for raw in raws])


def _proxy(rig: Rig, *faults: Fault, **options: Any) -> Pop3FaultProxy:
    return Pop3FaultProxy(rig.dovecot.host, rig.dovecot.pop3_port, list(faults), **options)


# A server without UIDL (and without TOP), for every poll through the proxy.
NO_UIDL = Fault("UIDL", Action.REPLY, times=1000, reply=b"-ERR unsupported")
NO_TOP = Fault("CAPA", Action.REWRITE, times=1000, rewrite=drop_capability(b"TOP"))
NO_PIPELINING = Fault("CAPA", Action.REWRITE, times=1000, rewrite=drop_capability(b"PIPELINING"))


def _events(stderr: str) -> list[dict[str, Any]]:
    """The JSON log lines of a CLI run."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def _failed(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The run exited 1 and logged exactly one ``poll.failed``; that event is returned."""
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert f"{ACCOUNT}: failed: " in result.stderr
    failed = [e for e in _events(result.stderr) if e.get("event") == "poll.failed"]
    assert len(failed) == 1, result.stderr[-3000:]
    return failed[0]


@pytest.mark.parametrize(
    ("after_bytes", "rst"),
    [(5000, True), (5000, False), (-1, False)],
    ids=["rst-mid-body", "fin-mid-body", "fin-before-last-byte"],
)
def test_connection_lost_mid_retr_refetches_only_what_was_not_stored(
    rig: Rig, after_bytes: int, rst: bool
) -> None:
    """A connection lost inside the large message's RETR reply stores nothing partial."""
    cut = Fault("RETR", Action.CUT, nth=3, after_bytes=after_bytes, rst=rst)
    with _proxy(rig, cut) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["RETR#3:cut"]
    assert _failed(result)["kind"] == "TransientError"
    stored, server = rig.check()
    # Lock-step stores messages 1-2 first; with PIPELINING a TCP reset may also discard
    # replies already buffered, so fewer are stored. Either way DELE was never committed.
    assert len(stored) <= 2 and len(server) == 4
    rig.finish()


@pytest.mark.parametrize("action", [Action.RESET, Action.CUT], ids=["unsent", "unanswered"])
def test_connection_lost_at_dele_commits_nothing(rig: Rig, action: Action) -> None:
    """A reset at the second DELE (before or after the server saw it) deletes nothing."""
    with _proxy(rig, Fault("DELE", action, nth=2)) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == [f"DELE#2:{action.value}"]
    assert _failed(result)["kind"] == "TransientError"
    stored, server = rig.check()
    # DELE 1 is sent once message 1 is stored; with PIPELINING later RETR replies may
    # already have been read and stored too. Nothing was committed.
    assert len(stored) >= 1 and len(server) == 4
    rig.finish()


def test_reset_after_quit_was_forwarded_loses_nothing(rig: Rig) -> None:
    """The server commits QUIT but the client never sees +OK: a failure, yet all stored once."""
    with _proxy(rig, Fault("QUIT", Action.CUT)) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["QUIT#1:cut"]
    assert _failed(result)["kind"] == "TransientError"
    rig.check(complete=True)
    rig.finish()


def test_reset_before_quit_leaves_everything_to_the_next_poll(rig: Rig) -> None:
    """QUIT never reaches the server: nothing is deleted, and the next poll only DELEs."""
    with _proxy(rig, Fault("QUIT", Action.RESET)) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["QUIT#1:reset"]
    assert _failed(result)["kind"] == "TransientError"
    stored, server = rig.check()
    assert len(stored) == 4 and len(server) == 4
    clean = rig.poll()
    assert "fetched 0" in clean.stdout and "already stored 4, deleted 4" in clean.stdout
    rig.check(complete=True)


def test_stalled_server_times_out_instead_of_hanging(rig: Rig) -> None:
    """A server that stops sending mid-RETR ends the poll after about one read timeout."""
    with _proxy(rig, Fault("RETR", Action.STALL, nth=2, after_bytes=40)) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["RETR#2:stall"]
    assert _failed(result)["kind"] == "TransientError"
    assert "timed out" in result.stderr
    stored, server = rig.check()
    assert len(stored) == 1 and len(server) == 4
    rig.finish()


def test_trickled_replies_are_reassembled_exactly(rig: Rig) -> None:
    """Replies arriving 64 bytes at a time still give byte-exact messages."""
    with _proxy(rig, trickle=Trickle(chunk=64, delay=0.001)) as proxy:
        result = rig.poll(proxy)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored 4" in result.stdout and "deleted 4" in result.stdout
    assert proxy.fired == [] and proxy.connections == 1
    assert not accepts_connections(proxy.host, proxy.port), "the proxy outlived its block"
    rig.check(complete=True)
    rig.finish()


def test_sys_temp_on_retr_is_transient_and_deletes_nothing(rig: Rig) -> None:
    """-ERR [SYS/TEMP] on the second RETR fails the poll as transient; nothing is deleted."""
    temp = Fault("RETR", Action.REPLY, nth=2, reply=b"-ERR [SYS/TEMP] try later")
    with _proxy(rig, temp) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["RETR#2:reply"]
    failed = _failed(result)
    assert failed["kind"] == "TransientError" and "[SYS/TEMP] try later" in failed["error"]
    stored, server = rig.check()
    assert len(stored) == 1 and len(server) == 4
    rig.finish()


def test_in_use_at_pass_is_transient_with_a_clear_error(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-ERR [IN-USE] at PASS raises TransientError, and the CLI exits 1 saying so."""
    in_use = Fault("PASS", Action.REPLY, times=2, reply=b"-ERR [IN-USE] locked")
    with _proxy(rig, in_use) as proxy:
        with pytest.raises(TransientError, match=r"PASS: server said -ERR \[IN-USE\] locked"):
            rig.poll_in_process(proxy, monkeypatch)
        result = rig.poll(proxy)
    assert proxy.fired == ["PASS#1:reply", "PASS#2:reply"]
    assert result.returncode == 1
    assert f"{ACCOUNT}: failed: PASS: server said -ERR [IN-USE] locked" in result.stderr
    stored, server = rig.check()
    assert stored == set() and len(server) == 4
    rig.finish()


def test_auth_refused_at_pass_is_permanent_and_names_the_account(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-ERR [AUTH] at PASS raises AuthError, and the CLI exits 1 naming the account."""
    refused = Fault("PASS", Action.REPLY, times=2, reply=b"-ERR [AUTH] bad")
    with _proxy(rig, refused) as proxy:
        with pytest.raises(AuthError, match="refused authentication"):
            rig.poll_in_process(proxy, monkeypatch)
        result = rig.poll(proxy)
    assert proxy.fired == ["PASS#1:reply", "PASS#2:reply"]
    assert result.returncode == 1
    assert f"{ACCOUNT}: failed: PASS: server refused authentication" in result.stderr
    assert rig.user.password not in result.stdout + result.stderr
    stored, server = rig.check()
    assert stored == set() and len(server) == 4
    rig.finish()


def test_duplicate_uidl_falls_back_to_content_identities(rig: Rig) -> None:
    """Messages 1 and 2 listed with one UIDL get header-derived identities; all 4 ingested."""
    with _proxy(rig, Fault("UIDL", Action.REWRITE, rewrite=duplicate_uidl(1, 2))) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["UIDL#1:rewrite"]
    assert proxy.commands["TOP"] >= 2  # identities of 1 and 2 from their header blocks
    assert result.returncode == 0, result.stderr[-3000:]
    assert "listed 4, fetched 4, stored 4" in result.stdout and "deleted 4" in result.stdout
    dupes = [e for e in _events(result.stderr) if e.get("event") == "mailbox.duplicate_uidl"]
    assert [e["numbers"] for e in dupes] == [[1, 2]]
    rig.check(complete=True)
    rig.finish()


def test_uidl_unsupported_falls_back_to_content_identities(rig: Rig) -> None:
    """A server answering UIDL with -ERR is polled by header-derived identities."""
    with _proxy(rig, NO_UIDL) as proxy:
        result = rig.poll(proxy)
    assert proxy.fired == ["UIDL#1:reply"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored 4" in result.stdout and "deleted 4" in result.stdout
    assert [e["event"] for e in _events(result.stderr)].count("mailbox.no_uidl") == 1
    assert proxy.commands["TOP"] == 4 and proxy.commands["RETR"] == 4
    rig.check(complete=True)
    rig.finish()


def test_content_identities_are_stable_across_a_lost_connection(rig: Rig) -> None:
    """Without UIDL, a poll cut mid-RETR is resumed: stored messages are re-read only to
    confirm their identity by full content, then DELEd, never stored a second time."""
    cut = Fault("RETR", Action.CUT, nth=3, after_bytes=5000)
    with _proxy(rig, NO_UIDL, cut) as proxy:
        _failed(rig.poll(proxy))
        stored, server = rig.check()
        done = len(stored)  # 2 in lock-step; pipelined replies may be cut off earlier
        assert done <= 2 and len(server) == 4
        again = rig.poll(proxy)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"fetched 4, stored {4 - done}" in again.stdout
    assert f"already stored {done}, deleted 4" in again.stdout
    rig.check(complete=True)
    rig.finish()


@pytest.mark.parametrize("pipelined", [True, False], ids=["pipelined", "lock-step"])
def test_expire_zero_server_consumes_only_stored_messages_after_a_failed_dele(
    rig: Rig, pipelined: bool
) -> None:
    """On an EXPIRE 0 server, a failed DELE never lets QUIT consume an unstored message."""
    dele = Fault("DELE", Action.REPLY, nth=2, reply=b"-ERR [SYS/TEMP] try later")
    faults = [dele] if pipelined else [dele, NO_PIPELINING]
    with _proxy(rig, *faults, expire_zero=True) as proxy:
        result = rig.poll(proxy)
    assert "DELE#2:reply" in proxy.fired
    assert _failed(result)["kind"] == "TransientError"
    stored, server = rig.check()
    assert set(rig.delivered) - set(server) <= stored  # consumed only if stored
    if not pipelined:  # lock-step: what was retrieved was stored, so RSET + QUIT was safe
        assert proxy.commands["QUIT"] == 1 and len(stored) >= 2
    else:  # RETR 3 and 4 were already sent, unstored: the connection is dropped, no QUIT
        assert proxy.commands["QUIT"] == 0 and len(server) == 4
    rig.finish()


def test_without_uidl_or_top_no_quit_follows_unstored_retrievals(rig: Rig) -> None:
    """Without UIDL and TOP, a failed poll must not QUIT after RETRs it has not stored."""
    dele = Fault("DELE", Action.REPLY, nth=1, reply=b"-ERR [SYS/TEMP] try later")
    with _proxy(rig, NO_UIDL, NO_TOP, dele, expire_zero=True) as proxy:
        result = rig.poll(proxy)
    assert _failed(result)["kind"] == "TransientError"
    rig.check()
    rig.finish()


def test_without_uidl_a_lookalike_after_a_lost_quit_reply_is_not_deleted_unstored(
    rig: Rig,
) -> None:
    """Without UIDL, a new message with the same headers and size as a gone one is stored."""
    rig.finish()  # the four standard messages are out of the way
    head = b"From: cron@example.com\nTo: ops@example.com\nSubject: nightly code\n\n"
    first, second = head + b"code 111111\n", head + b"code 222222\n"
    rig.dovecot.deliver(rig.user.name, first)
    rig.delivered += [as_pop3(first), as_pop3(second)]
    with _proxy(rig, NO_UIDL, Fault("QUIT", Action.CUT)) as proxy:
        _failed(rig.poll(proxy))  # the server deleted `first`; the ledger still says stored
        rig.dovecot.deliver(rig.user.name, second)
        result = rig.poll(proxy)
    assert result.returncode == 0, result.stderr[-3000:]
    rig.check()
    rig.finish()


def _add_capabilities(*lines: bytes) -> Any:
    def rewrite(reply: bytes) -> bytes:
        head, _, tail = reply.rpartition(b"\r\n.\r\n")
        return head + b"".join(b"\r\n" + line for line in lines) + b"\r\n.\r\n" + tail

    return rewrite


def test_login_delay_defers_the_next_poll_and_expire_is_reported(rig: Rig) -> None:
    """LOGIN-DELAY 60 after login: the next poll waits (exit 75) instead of logging in again;
    EXPIRE in keep mode is logged, since the server will remove mail we were told to keep."""
    caps = Fault(
        "CAPA",
        Action.REWRITE,
        times=1000,
        rewrite=_add_capabilities(b"LOGIN-DELAY 60", b"EXPIRE 5"),
    )
    with _proxy(rig, caps) as proxy:
        cfg = write_config(
            rig.tmp / "keep.yaml",
            redis_url=rig.redis_url,
            directory=rig.store,
            accounts=[{**rig.account(proxy), "delete": "never"}],
        )
        env = {password_env(ACCOUNT): rig.user.password}
        first = run_cli(cfg, "poll", ACCOUNT, env=env)
        assert first.returncode == 0, first.stderr[-2000:]
        assert "mailbox.server_expires_mail" in first.stderr
        logins = proxy.commands["USER"]
        second = run_cli(cfg, "poll", ACCOUNT, env=env)
    assert second.returncode == 75 and "deferred" in second.stdout
    assert proxy.commands["USER"] == logins  # no second login inside the delay
    rig.check()

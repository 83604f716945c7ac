"""Interoperability: our POP3 client and `ingest poll` against GNU Mailutils' pop3d (mbox).

pop3d re-renders the header block it serves and adds an ``X-UIDL`` field, so what RETR
returns is ``harness.mailutils.as_mailutils_pop3(raw, uidl)``, not ``harness.as_pop3(raw)``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import trustme
from interop_checks import account_for, check_wrong_password
from support import (
    account_entry,
    bucket_objects,
    password_env,
    poll_until_unlocked,
    run_cli,
    split_objects,
    write_config,
)

from harness import MailUser, MotoS3, as_pop3, corpus_files
from harness.mailutils import MailutilsPop3d, as_mailutils_pop3
from ingest.errors import AuthError, SecurityError
from ingest.pop3 import Endpoint, open_session
from ingest.pop3_auth import Credentials

TRICKY = (
    b"From the envelope: a colon makes this a header field\n"
    b"Subject:no space\n"
    b"X-Blank :  \n"
    b"X-Folded: a\n\tb\r\n"
    b"\n"
    b".a line starting with a dot\n"
    b"..two dots\n"
    b".\n"
    b"From me, and >From you\n"
    b">>From quoted twice\r\n"
    b"bare\rCR, CR CR LF\r\r\n" + b"x" * 100_000 + b"\n"
    b"no final newline"
)


def _creds(user: MailUser, password: str | None = None) -> Credentials:
    return Credentials("password", user.name, user.password if password is None else password)


def _ep(server: MailutilsPop3d, security: str = "starttls", **kw: object) -> Endpoint:
    port = server.pop3s_port if security == "tls" else server.pop3_port
    kw.setdefault("allow_private", True)
    return Endpoint("localhost", port, security, timeout=10, ca_file=server.ca_file, **kw)


def _account(server: MailutilsPop3d, user: MailUser, **kw: Any) -> dict[str, Any]:
    """``support.account_entry`` for pop3d: it reads the attributes Dovecot and pop3d share."""
    return account_entry(server, user, **kw)  # type: ignore[arg-type]


def _retrieve_all(server: MailutilsPop3d, user: MailUser) -> list[tuple[str, int, bytes]]:
    """(UIDL, LIST size, RETR bytes) of every message, then RSET + QUIT."""
    with open_session(_ep(server), _creds(user)) as s:
        found = [(entry.uidl, entry.size, s.retrieve(entry).read()) for entry in s.listing()]
        s.reset_and_quit()
    return found


def _served_differently(raw: bytes) -> bool:
    """True if pop3d's RETR differs from Dovecot's by more than the added X-UIDL field."""
    try:
        dovecot = as_pop3(raw)
    except ValueError:
        return True
    return as_mailutils_pop3(raw, "U").replace(b"X-UIDL: U\r\n", b"", 1) != dovecot


def _selection() -> list[bytes]:
    """Every corpus message pop3d serves unlike Dovecot (lost or re-spaced header lines,
    leading whitespace, envelope lines), the four largest, and every 12th of the rest."""
    files = corpus_files()
    largest = set(sorted(files, key=lambda p: p.stat().st_size)[-4:])
    odd, rest = [], []
    for path in files:
        raw = path.read_bytes()
        (odd if path in largest or _served_differently(raw) else rest).append(raw)
    return odd + rest[::12]


def _originals_by_uidl(stored: dict[str, bytes], originals: list[bytes]) -> dict[str, bytes]:
    """Pair each stored message (by UIDL) with the original that pop3d served as it."""
    by_length: dict[int, list[bytes]] = defaultdict(list)
    for raw in originals:
        by_length[len(as_mailutils_pop3(raw, ""))].append(raw)
    paired = {}
    for uidl, got in stored.items():
        candidates = by_length[len(got) - len(uidl)] + by_length[len(got)]
        matches = [raw for raw in candidates if as_mailutils_pop3(raw, uidl) == got]
        assert matches, f"{uidl}: stored bytes are what pop3d serves for no original"
        paired[uidl] = matches[0]
    return paired


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_modes_verify_the_certificate_and_log_in(
    mailutils: MailutilsPop3d, mu_user: MailUser, security: str
) -> None:
    """Implicit TLS and STLS both verify chain and hostname, then authenticate."""
    with open_session(_ep(mailutils, security), _creds(mu_user)) as s:
        assert s.encrypted
        assert {"UIDL", "TOP", "PIPELINING"} <= set(s.capabilities)
        assert s.capabilities["IMPLEMENTATION"].startswith("GNU Mailutils")


def test_untrusted_certificate_is_refused(mailutils: MailutilsPop3d, mu_user: MailUser) -> None:
    """A certificate from a CA we were not told to trust stops the session before login."""
    ca_file = mailutils.workdir / f"other-ca-{secrets.token_hex(4)}.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    ep = Endpoint(
        "localhost",
        mailutils.pop3_port,
        "starttls",
        timeout=10,
        ca_file=ca_file,
        allow_private=True,
    )
    with pytest.raises(SecurityError, match="certificate"), open_session(ep, _creds(mu_user)):
        pass


def test_password_is_not_sent_in_plaintext_unless_allowed(
    mailutils: MailutilsPop3d, mu_user: MailUser
) -> None:
    """security: plain refuses to send PASS unless allow_plaintext is set, then logs in."""
    with (
        pytest.raises(SecurityError, match="unencrypted"),
        open_session(_ep(mailutils, "plain"), _creds(mu_user)),
    ):
        pass
    with open_session(_ep(mailutils, "plain", allow_plaintext=True), _creds(mu_user)) as s:
        assert not s.encrypted


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
def test_poll_in_every_security_mode_stores_exactly_and_empties(
    tmp_path: Path, mailutils: MailutilsPop3d, mu_user: MailUser, redis_url: str, security: str
) -> None:
    """Over plain, STLS and implicit TLS the poll stores as_mailutils_pop3 of the message
    under its UIDL and empties the mbox."""
    mailutils.deliver(mu_user.name, TRICKY)
    store = tmp_path / "s"
    acct = account_for(mailutils, mu_user, security)
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mu_user.password})
    assert result.returncode == 0, result.stderr[-3000:]
    ((eml,), (doc,)) = list(store.rglob("*.eml")), list(store.rglob("*.json"))
    assert eml.read_bytes() == as_mailutils_pop3(TRICKY, json.loads(doc.read_text())["uidl"])
    assert mailutils.message_count(mu_user.name) == 0


@pytest.mark.parametrize("security", ["plain", "starttls", "tls"])
def test_wrong_password_in_every_mode_is_an_auth_error_naming_the_account(
    tmp_path: Path, mailutils: MailutilsPop3d, mu_user: MailUser, redis_url: str, security: str
) -> None:
    """pop3d's refusal becomes AuthError for the named account; nothing is deleted."""
    check_wrong_password(tmp_path, mailutils, mu_user, security, redis_url)


def test_wrong_password_is_an_auth_error(mailutils: MailutilsPop3d, mu_user: MailUser) -> None:
    """pop3d's -ERR to PASS becomes AuthError (permanent: alert, do not retry)."""
    with pytest.raises(AuthError), open_session(_ep(mailutils), _creds(mu_user, "wrong")):
        pass


def test_retr_is_the_documented_transform_for_dots_long_lines_and_header_quirks(
    mailutils: MailutilsPop3d, mu_user: MailUser
) -> None:
    """RETR is as_mailutils_pop3(raw, uidl) byte for byte, and LIST counts all but X-UIDL."""
    mailutils.deliver(mu_user.name, TRICKY)
    ((uidl, size, raw),) = _retrieve_all(mailutils, mu_user)
    assert raw == as_mailutils_pop3(TRICKY, uidl)
    assert b"\r\n>>From quoted twice\r\n" in raw and b"\r\nFrom me, and >From you\r\n" in raw
    assert size == len(raw) - len(f"X-UIDL: {uidl}\r\n")


def test_retr_of_the_whole_corpus_is_the_documented_transform(
    mailutils: MailutilsPop3d, mu_user: MailUser
) -> None:
    """Each of the 160 corpus messages, pipelined in one session, is as_mailutils_pop3 of it."""
    originals = [path.read_bytes() for path in corpus_files()]
    for raw in originals:
        mailutils.deliver(mu_user.name, raw)
    with open_session(_ep(mailutils, "tls"), _creds(mu_user)) as s:
        entries = s.listing()
        got = [(entry.uidl, spool.read()) for entry, spool in s.retrieve_many(entries)]
        s.reset_and_quit()
    assert len(got) == len(originals)
    for (uidl, raw), original in zip(got, originals, strict=True):
        assert raw == as_mailutils_pop3(original, uidl)


def test_a_rewritten_mailbox_serves_other_bytes_under_the_same_uidl(
    mailutils: MailutilsPop3d, mu_user: MailUser
) -> None:
    """Once a session ended, pop3d serves the same UIDL with a new size and new header fields."""
    mailutils.deliver(mu_user.name, b"Subject: a\n\nhello\n")
    ((uidl, size, first),) = _retrieve_all(mailutils, mu_user)
    ((again, later_size, later),) = _retrieve_all(mailutils, mu_user)
    assert again == uidl and first == as_mailutils_pop3(b"Subject: a\n\nhello\n", uidl)
    assert later_size != size and b"\r\nX-UID: " in later and b"\r\nStatus: " in later


def test_deletions_happen_only_at_quit(mailutils: MailutilsPop3d, mu_user: MailUser) -> None:
    """DELE then a dropped connection deletes nothing; DELE then QUIT deletes."""
    mailutils.deliver(mu_user.name, b"Subject: a\n\nx\n")
    with open_session(_ep(mailutils), _creds(mu_user)) as s:
        for entry in s.listing():
            s.delete(entry)
        s.abandon()
    assert mailutils.message_count(mu_user.name) == 1
    with open_session(_ep(mailutils), _creds(mu_user)) as s:
        for entry in s.listing():
            s.delete(entry)
        s.commit()
    assert mailutils.message_count(mu_user.name) == 0


def test_poll_stores_corpus_messages_exactly_and_empties_the_mailbox(
    tmp_path: Path,
    mailutils: MailutilsPop3d,
    mu_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """~40 hard corpus messages land as pop3d served them, one JSON each; then nothing more."""
    originals = _selection()
    for raw in originals:
        mailutils.deliver(mu_user.name, raw)
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[_account(mailutils, mu_user)],
    )
    env = {password_env("support"): mu_user.password}
    first = run_cli(cfg, "poll", "support", env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"stored {len(originals)}" in first.stdout

    objects = bucket_objects(s3_server, bucket)
    raws, docs = split_objects(objects)
    assert len(raws) == len(docs) == len(originals)
    stored = {}
    for body in docs.values():
        doc = json.loads(body)
        assert hashlib.sha256(raws[doc["raw_key"]]).hexdigest() == doc["sha256"]
        stored[doc["uidl"]] = raws[doc["raw_key"]]
    paired = _originals_by_uidl(stored, originals)
    assert sorted(paired.values()) == sorted(originals)
    assert mailutils.message_count(mu_user.name) == 0

    second = run_cli(cfg, "poll", "support", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "listed 0, fetched 0, stored 0" in second.stdout
    assert bucket_objects(s3_server, bucket).keys() == objects.keys()


def _keep_mode_polls(
    tmp_path: Path, server: MailutilsPop3d, user: MailUser, redis_url: str
) -> tuple[Path, list[str]]:
    """Deliver one message and poll three times in keep mode over implicit TLS."""
    raw = b"From: a@example.com\nSubject: keep me\n\nhello\n"
    server.deliver(user.name, raw)
    store = tmp_path / "store"
    acct = _account(server, user, name="keep", security="tls", delete="never")
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    outputs = []
    for _ in range(3):
        result = run_cli(cfg, "poll", "keep", env={password_env("keep"): user.password})
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout)
    return store, outputs


def test_keep_mode_leaves_the_mailbox_as_it_was(
    tmp_path: Path, mailutils: MailutilsPop3d, mu_user: MailUser, redis_url: str
) -> None:
    """delete: never stores the message and leaves it on the server through two polls."""
    store, outputs = _keep_mode_polls(tmp_path, mailutils, mu_user, redis_url)
    assert "stored 1" in outputs[0]
    assert mailutils.message_count(mu_user.name) == 1
    assert any(p.suffix == ".eml" for p in store.rglob("*"))


def test_keep_mode_second_poll_fetches_nothing(
    tmp_path: Path, mailutils: MailutilsPop3d, mu_user: MailUser, redis_url: str
) -> None:
    """pop3d rewrites the message's headers after each session (Status, X-UID): the second
    poll fetches it once to compare body and Message-ID, stores nothing, and the third poll
    retrieves nothing; the store holds one raw message."""
    store, outputs = _keep_mode_polls(tmp_path, mailutils, mu_user, redis_url)
    assert "stored 0" in outputs[1] and "already stored 1" in outputs[1]
    assert "fetched 0" in outputs[2] and "already stored 1" in outputs[2]
    assert len(list(store.rglob("*.eml"))) == 1


def test_poll_killed_before_quit_then_repeated_stores_every_message_once(
    tmp_path: Path, mailutils: MailutilsPop3d, mu_user: MailUser, redis_url: str
) -> None:
    """A poll SIGKILLed before QUIT, then polled again, stores each message once and empties."""
    for number in range(3):
        mailutils.deliver(mu_user.name, b"Subject: m%d\n\nhello\n" % number)
    store = tmp_path / "s"
    acct = _account(mailutils, mu_user)
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct], lock_ttl=2
    )
    env = {password_env("support"): mu_user.password}
    killed = run_cli(cfg, "poll", "support", env={**env, "INGEST_FAILPOINT": "before_quit"})
    assert killed.returncode == -9 and mailutils.message_count(mu_user.name) == 3
    poll_until_unlocked(cfg, env)
    assert mailutils.message_count(mu_user.name) == 0
    assert len(list(store.rglob("*.eml"))) == 3


def test_wrong_password_fails_naming_the_account_and_never_echoes_the_secret(
    tmp_path: Path, mailutils: MailutilsPop3d, mu_user: MailUser, redis_url: str
) -> None:
    """An auth failure exits non-zero, says which account, and the canary never appears."""
    canary = f"canary-{secrets.token_hex(8)}"
    mailutils.deliver(mu_user.name, b"Subject: x\n\nbody\n")
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=tmp_path / "s",
        accounts=[_account(mailutils, mu_user)],
    )
    result = run_cli(cfg, "poll", "support", env={password_env("support"): canary})
    assert result.returncode == 1
    assert "support" in result.stderr and "authentication" in result.stderr.lower()
    assert canary not in result.stdout + result.stderr
    assert mailutils.message_count(mu_user.name) == 1

"""`ingest poll` as a real process against real Dovecot, Redis and S3 (moto server)."""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

from jsonschema import Draft202012Validator
from support import (
    account_entry,
    bucket_objects,
    password_env,
    run_cli,
    split_objects,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, as_pop3, corpus_files
from ingest import parse

SCHEMA = Path(parse.__file__).parent / "schema" / "message.schema.json"


def documented_keys_only(entry: dict[str, object]) -> dict[str, object]:
    """The account with just the keys issue 2's example config shows (host: localhost)."""
    keep = {
        "name",
        "host",
        "port",
        "security",
        "ca_file",
        "username",
        "password_env",
        "delete",
        "interval",
    }
    return {k: v for k, v in entry.items() if k in keep}


def _deliver_corpus(dovecot: Dovecot, user: MailUser) -> set[bytes]:
    expected = set()
    for path in corpus_files():
        raw = path.read_bytes()
        dovecot.deliver(user.name, raw)
        expected.add(as_pop3(raw))
    return expected


def test_poll_stores_the_whole_corpus_exactly_and_empties_the_mailbox(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """Every corpus message lands byte-exact with one JSON naming it; a second poll adds nothing."""
    expected = _deliver_corpus(dovecot, mail_user)
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        prefix="mail/v1",
        accounts=[documented_keys_only(account_entry(dovecot, mail_user))],
    )
    env = {password_env("support"): mail_user.password}
    first = run_cli(cfg, "poll", "support", env=env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "support: ok" in first.stdout

    objects = bucket_objects(s3_server, bucket)
    raws, docs = split_objects(objects)
    assert set(raws.values()) == expected and len(raws) == len(expected)
    assert all(k.startswith("mail/v1/support/raw/") for k in raws)
    assert len(docs) == len(raws)
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    attachment_keys = set()
    for body in docs.values():
        doc = json.loads(body)
        validator.validate(doc)
        assert hashlib.sha256(raws[doc["raw_key"]]).hexdigest() == doc["sha256"]
        assert doc["account"] == "support"
        for att in doc["attachments"]:
            assert hashlib.sha256(objects[att["key"]]).hexdigest() == att["sha256"]
            attachment_keys.add(att["key"])
    assert attachment_keys  # the corpus has attachments: each stored once under its content key
    assert set(objects) == set(raws) | set(docs) | attachment_keys
    assert dovecot.message_count(mail_user.name) == 0

    second = run_cli(cfg, "poll", "support", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "listed 0, fetched 0, stored 0" in second.stdout
    assert bucket_objects(s3_server, bucket) == objects


def test_ticket_pattern_fills_ticket_ref(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """A per-account ticket_pattern captures the ticket number from the subject."""
    dovecot.deliver(mail_user.name, b"Subject: Re: [#4711] printer on fire\n\nstill burning\n")
    store = tmp_path / "store"
    acct = account_entry(dovecot, mail_user, ticket_pattern=r"\[#(\d+)\]")
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mail_user.password})
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(next(store.rglob("*.json")).read_text())
    assert doc["ticket_ref"] == "4711" and doc["thread_subject"] == "[#4711] printer on fire"


def test_keep_mode_over_implicit_tls_into_a_directory(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """delete: never leaves the mailbox as it was, and the next poll retrieves nothing."""
    raw = b"From: a@example.com\nSubject: keep me\n\nhello\n"
    dovecot.deliver(mail_user.name, raw)
    store = tmp_path / "store"
    acct = account_entry(dovecot, mail_user, name="keep", security="tls", delete="never")
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    env = {password_env("keep"): mail_user.password}
    first = run_cli(cfg, "poll", "keep", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    files = sorted(p for p in store.rglob("*") if p.is_file())
    assert [p.read_bytes() for p in files if p.suffix == ".eml"] == [as_pop3(raw)]
    assert dovecot.message_count(mail_user.name) == 1
    second = run_cli(cfg, "poll", "keep", env=env)  # STAT and UIDL as the first left them
    assert "mailbox.unchanged" in second.stderr, second.stderr[-3000:]
    assert "fetched 0" in second.stdout and "already stored 1" in second.stdout
    assert sorted(p for p in store.rglob("*") if p.is_file()) == files
    later = b"From: b@example.com\nSubject: new one\n\nhello again\n"
    dovecot.deliver(mail_user.name, later)
    third = run_cli(cfg, "poll", "keep", env=env)
    assert "mailbox.unchanged" not in third.stderr and "stored 1" in third.stdout
    fourth = run_cli(cfg, "poll", "keep", env=env)
    assert "mailbox.unchanged" in fourth.stderr and "already stored 2" in fourth.stdout
    stored = {p.read_bytes() for p in store.rglob("*.eml")}
    assert stored == {as_pop3(raw), as_pop3(later)}
    assert dovecot.message_count(mail_user.name) == 2


def test_wrong_password_fails_naming_the_account_and_never_echoes_the_secret(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """An auth failure exits non-zero, says which account, and the canary never appears."""
    canary = f"canary-{secrets.token_hex(8)}"
    dovecot.deliver(mail_user.name, b"Subject: x\n\nbody\n")
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=tmp_path / "s",
        accounts=[account_entry(dovecot, mail_user)],
    )
    result = run_cli(cfg, "poll", "support", env={password_env("support"): canary})
    assert result.returncode == 1
    assert "support" in result.stderr and "authentication" in result.stderr.lower()
    assert canary not in result.stdout + result.stderr
    assert dovecot.message_count(mail_user.name) == 1


def test_password_never_appears_in_logs_or_stored_output(
    tmp_path: Path, dovecot: Dovecot, redis_url: str
) -> None:
    """A successful poll with a canary password leaves it in no log line and no object."""
    canary = f"canary-{secrets.token_hex(8)}"
    user = dovecot.add_user(f"u{secrets.token_hex(6)}", canary)
    dovecot.deliver(user.name, b"Subject: canary test\n\nnothing secret here\n")
    store = tmp_path / "s"
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=store,
        accounts=[account_entry(dovecot, user)],
    )
    result = run_cli(
        cfg, "--log-level", "DEBUG", "poll", "support", env={password_env("support"): canary}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert canary not in result.stdout + result.stderr
    for path in store.rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes()


def test_plaintext_password_is_refused_unless_allowed(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """security: plain without allow_plaintext is a config error naming file, key and fix."""
    acct = account_entry(dovecot, mail_user, security="plain")
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, directory=tmp_path / "s", accounts=[acct]
    )
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mail_user.password})
    assert result.returncode == 78
    assert str(cfg) in result.stderr and "accounts[0](support)" in result.stderr
    assert "allow_plaintext" in result.stderr

    dovecot.deliver(mail_user.name, b"Subject: plain\n\nok\n")
    acct["allow_plaintext"] = True
    write_config(cfg, redis_url=redis_url, directory=tmp_path / "s", accounts=[acct])
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mail_user.password})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored 1" in result.stdout


def test_check_reports_one_line_per_component(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """`ingest check` reaches Redis, S3 and each account (several at once, reported in
    config order), names a broken account, and checks only the accounts named."""
    good = account_entry(dovecot, mail_user, name="good")
    bad = account_entry(dovecot, mail_user, name="bad", security="tls", ca_file=None)
    bad.pop("ca_file")
    more = [account_entry(dovecot, mail_user, name=f"more{i}") for i in range(4)]
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket,
        accounts=[good, bad, *more],
    )  # fmt: skip
    names = ["good", "bad", *(a["name"] for a in more)]
    env = {password_env(n): mail_user.password for n in names}
    result = run_cli(cfg, "check", "--logins", "3", env=env)
    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert any(line.startswith("ok") and "redis" in line for line in lines)
    assert any(line.startswith("ok") and "conditional writes" in line for line in lines)
    accounts = [line for line in lines if "  account " in line]
    assert [line.split("account ")[1].split(" ")[0] for line in accounts] == names
    assert accounts[0].startswith("ok") and all(a.startswith("ok") for a in accounts[2:])
    assert accounts[1].startswith("FAIL") and "certificate" in accounts[1]

    only = run_cli(cfg, "check", "more2", "good", env=env)
    assert only.returncode == 0, only.stdout + only.stderr[-2000:]
    named = [line.split("account ")[1].split(" ")[0] for line in only.stdout.splitlines()
             if "  account " in line]  # fmt: skip
    assert named == ["more2", "good"]
    unknown = run_cli(cfg, "check", "nosuch", env=env)
    assert unknown.returncode == 78 and "no account named 'nosuch'" in unknown.stderr

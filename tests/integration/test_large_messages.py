"""Large messages: streamed to the store byte-exact, headers-only JSON, size policy."""

from __future__ import annotations

import json
from pathlib import Path

from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, as_pop3


def _big(size: int) -> bytes:
    head = b"From: big@example.com\nSubject: a large one\nMessage-ID: <big@x>\n\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\n"
    return head + line * (size // len(line)) + b"." * 5000 + b"\n.\n..\nend\n"


def test_message_above_the_parse_limit_is_stored_exactly_with_a_headers_only_json(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """A 12 MB message (limit 4 MB) lands byte-exact; its JSON says the body was not parsed."""
    raw = _big(12_000_000)
    dovecot.deliver(mail_user.name, raw)
    store = tmp_path / "s"
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=store,
        accounts=[account_entry(dovecot, mail_user)],
        parse_max_bytes=4_000_000,
    )
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mail_user.password})
    assert result.returncode == 0, result.stderr[-2000:]
    (eml,) = store.rglob("*.eml")
    assert eml.read_bytes() == as_pop3(raw)
    doc = json.loads(next(store.rglob("*.json")).read_text())
    assert doc["subject"] == "a large one" and doc["size"] == len(as_pop3(raw))
    assert "body-not-parsed-too-large" in doc["defects"]
    assert dovecot.message_count(mail_user.name) == 0


def test_messages_over_max_message_size_stay_on_the_server(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """LIST sizes decide before download: the big one is left and reported, the small stored."""
    dovecot.deliver(mail_user.name, _big(300_000))
    dovecot.deliver(mail_user.name, b"Subject: small\n\nhi\n")
    store = tmp_path / "s"
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=store,
        accounts=[account_entry(dovecot, mail_user, max_message_size=100_000)],
    )
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mail_user.password})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stored 1" in result.stdout and "oversize left 1" in result.stdout
    assert "message.oversize_left" in result.stderr
    assert dovecot.message_count(mail_user.name) == 1
    assert len(list(store.rglob("*.eml"))) == 1


def test_oversize_store_raw_stores_the_big_one_raw_with_headers_only_json_and_deletes_it(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """oversize: store_raw fetches a message over max_message_size, stores it byte-exact with
    a headers-only JSON (defect body-not-parsed-too-large) and deletes it like any other."""
    big = _big(300_000)
    dovecot.deliver(mail_user.name, big)
    dovecot.deliver(mail_user.name, b"Subject: small\n\nhi\n")
    store = tmp_path / "s"
    acct = account_entry(dovecot, mail_user, max_message_size=100_000, oversize="store_raw")
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    result = run_cli(cfg, "poll", "support", env={password_env("support"): mail_user.password})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "stored 2" in result.stdout and "oversize left 0" in result.stdout
    assert "message.oversize_raw" in result.stderr
    assert dovecot.message_count(mail_user.name) == 0
    assert sorted(p.read_bytes() for p in store.rglob("*.eml")) == sorted(
        [as_pop3(big), as_pop3(b"Subject: small\n\nhi\n")]
    )
    docs = {d["subject"]: d for d in (json.loads(p.read_text()) for p in store.rglob("*.json"))}
    assert "body-not-parsed-too-large" in docs["a large one"]["defects"]
    assert "body-not-parsed-too-large" not in docs["small"].get("defects", [])
    assert docs["a large one"]["size"] == len(as_pop3(big))

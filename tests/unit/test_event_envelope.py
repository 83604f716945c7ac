"""Events: the CloudEvents envelope, its stable id, the webhook signature and sink config."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

import pytest

from ingest.config_load import parse_settings
from ingest.delivery import account_sinks
from ingest.errors import ConfigError
from ingest.events import EVENT_TYPE, event_id, message_stored
from ingest.model import StoredMessage
from ingest.parse import parse_message
from ingest.sinks import sign

SECRET_BODY = "the-body-canary-7f3a"
RAW = (
    b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>\r\n"
    b"Subject: [#42] printer on fire\r\nMessage-ID: <m1@example.com>\r\n"
    b"Date: Tue, 03 Feb 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    b"--b\r\nContent-Type: text/plain\r\n\r\n" + SECRET_BODY.encode() + b"\r\n"
    b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="r.pdf"'
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
)
SHA = hashlib.sha256(RAW).hexdigest()


def _stored(uidl: str = "UID-1") -> StoredMessage:
    raw_key = f"p/support/raw/{SHA[:2]}/{SHA}.eml"
    doc = parse_message(
        RAW, account="support", uidl=uidl, sha256=SHA, raw_key=raw_key, prefix="p",
        ticket_pattern=r"\[#(\d+)\]",
    )  # fmt: skip
    return StoredMessage("support", uidl, SHA, len(RAW), raw_key, raw_key + ".json", doc)


def test_the_envelope_is_cloudevents_1_0_with_a_summary_and_never_a_body() -> None:
    """The event carries the required CloudEvents attributes and routing fields, no body."""
    event = message_stored(_stored(), 1_770_000_000.5)
    env = json.loads(event.body)
    assert env["specversion"] == "1.0" and env["type"] == EVENT_TYPE
    assert env["id"] == event.id == event_id("support", "UID-1", SHA)
    assert env["source"] == "ingest://support" and env["subject"] == SHA
    assert env["datacontenttype"] == "application/json"
    assert datetime.fromisoformat(env["time"]).timestamp() == 1_770_000_000.5
    data = env["data"]
    assert data["raw_key"].endswith(f"{SHA}.eml") and data["json_key"].endswith(".json")
    assert (data["subject"], data["ticket_ref"], data["message_id"]) == (
        "[#42] printer on fire", "42", "m1@example.com",
    )  # fmt: skip
    assert data["from"] == [{"name": "Alice", "address": "alice@example.com"}]
    assert [a["filename"] for a in data["attachments"]] == ["r.pdf"]
    assert data["attachments"][0]["key"] and data["attachment_count"] == 1
    assert data["classification"]["auto_reply"] is False
    assert SECRET_BODY not in event.body and "headers" not in data and "text" not in data


def test_the_id_is_stable_and_depends_on_account_uidl_and_content() -> None:
    """The same message gives the same id at any time; another UIDL or content, another id."""
    first = message_stored(_stored(), 1.0)
    again = message_stored(_stored(), 99999.0)
    assert first.id == again.id and first.body != again.body  # only ``time`` differs
    ids = {
        event_id("support", "UID-1", SHA), event_id("support", "UID-2", SHA),
        event_id("sales", "UID-1", SHA), event_id("support", "UID-1", "0" * 64),
    }  # fmt: skip
    assert len(ids) == 4


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    """A consumer recomputing HMAC-SHA256(secret, "TS.BODY") gets the header's value."""
    body = b'{"id":"x"}'
    expected = hmac.new(b"k3y", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"k3y", "1700000000", body) == f"sha256={expected}"
    assert sign(b"k3y", "1700000001", body) != sign(b"k3y", "1700000000", body)
    assert sign(b"other", "1700000000", body) != sign(b"k3y", "1700000000", body)


BASE = {
    "storage": {"url": "file:///tmp/x"},
    "accounts": [
        {"name": "support", "host": "h", "username": "u", "password_env": "PW"},
        {"name": "quiet", "host": "h", "username": "u", "password_env": "PW", "events": []},
        {
            "name": "own", "host": "h", "username": "u", "password_env": "PW",
            "events": [{"type": "celery", "task": "tickets.new_mail"}],
        },
    ],
}  # fmt: skip
HOOK = {"type": "webhook", "url": "https://hooks.example.com/in", "secret_env": "HOOK_SECRET"}


def test_accounts_take_the_default_sinks_unless_they_have_their_own() -> None:
    """Top-level ``events`` applies to accounts without a list; ``[]`` turns events off."""
    s = parse_settings({**BASE, "events": [HOOK, {"type": "redis_stream", "maxlen": 1000}]}, "f")
    support, quiet, own = s.accounts
    assert [c.sink_name for c in account_sinks(s, support)] == ["webhook", "redis_stream"]
    assert account_sinks(s, quiet) == ()
    (celery,) = account_sinks(s, own)
    assert (celery.sink_name, celery.queue, celery.max_attempts) == ("celery", "celery", 10)


@pytest.mark.parametrize(
    ("sink", "expected"),
    [
        ({**HOOK, "secret": "hunter2"}, "inline 'secret' is not accepted"),
        ({"type": "webhook", "url": "https://h/x"}, "exactly one of secret_env or secret_file"),
        ({**HOOK, "url": "http://h/x"}, "http:// would send events unencrypted"),
        ({**HOOK, "url": "ftp://h/x"}, "expected https://HOST/"),
        ({"type": "kafka"}, "does not match any of the expected tags"),
        ({"type": "redis_stream", "max_attempts": 0}, "greater than or equal to 1"),
        ({"type": "celery"}, "Field required"),
        ({"type": "celery", "task": "t", "queue": "ingest"}, "queue of ingest's own workers"),
    ],
)
def test_bad_sinks_are_reported_with_file_and_key(sink: dict[str, object], expected: str) -> None:
    """Each sink mistake names the file, the events key path and what was expected."""
    with pytest.raises(ConfigError) as err:
        parse_settings({**BASE, "events": [sink]}, "/etc/ingest.yaml")
    (problem,) = err.value.problems
    assert problem.startswith("/etc/ingest.yaml: events[0]") and expected in problem
    assert "hunter2" not in problem


def test_two_sinks_of_one_list_need_distinct_names() -> None:
    """Sinks keep their pending events apart by name, so a list may not repeat one."""
    with pytest.raises(ConfigError) as err:
        parse_settings({**BASE, "events": [HOOK, {**HOOK, "url": "https://b/"}]}, "f.yaml")
    assert "repeated: webhook" in str(err.value)
    named = [HOOK, {**HOOK, "url": "https://b/", "name": "backup"}]
    assert len(parse_settings({**BASE, "events": named}, "f.yaml").events) == 2

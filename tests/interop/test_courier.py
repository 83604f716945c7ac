"""Interoperability: `ingest poll` against Courier's pop3d (courier-pop with courier-authlib):
plain, STLS and implicit TLS (couriertls), Maildir, PAM users (``harness.courier``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_checks import (
    MESSAGES,
    account_for,
    check_keep_mode,
    check_stores_exactly_and_empties,
    check_wrong_password,
    corpus_sample,
    endpoint_for,
    private_server,
    served,
)
from support import password_env, poll_until_unlocked, write_config

from harness import MotoS3
from harness.courier import CourierPop3d, missing_prerequisites
from harness.maildrop import maildir_file
from ingest.pop3 import open_session
from ingest.pop3_auth import Credentials

MODES = ["plain", "starttls", "tls"]


@pytest.fixture(scope="module")
def courier() -> Iterator[CourierPop3d]:
    with private_server(missing_prerequisites(), "ingest-courier-", CourierPop3d) as server:
        yield server


@pytest.mark.parametrize("security", MODES)
def test_poll_stores_every_message_exactly_as_served_and_empties_the_maildir(
    tmp_path: Path,
    courier: CourierPop3d,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
    security: str,
) -> None:
    """Each message is stored once, byte for byte as RETR serves it (the Maildir file with
    CRLF line ends), the Maildir is emptied, and a later poll adds nothing."""
    messages = MESSAGES + corpus_sample()
    got = check_stores_exactly_and_empties(
        tmp_path, courier, courier.add_user(), security, s3=s3_server, bucket=bucket,
        redis_url=redis_url, messages=messages,
    )  # fmt: skip
    expected = [maildir_file(raw).replace(b"\n", b"\r\n") for raw in messages]
    assert sorted(raw for _, raw in got) == sorted(expected)


@pytest.mark.parametrize("security", MODES)
def test_keep_mode_second_poll_fetches_nothing(
    tmp_path: Path, courier: CourierPop3d, redis_url: str, security: str
) -> None:
    """delete: never leaves the Maildir untouched and a later poll retrieves nothing."""
    check_keep_mode(tmp_path, courier, courier.add_user(), security, redis_url)


@pytest.mark.parametrize("security", MODES)
def test_wrong_password_is_an_auth_error_naming_the_account(
    tmp_path: Path, courier: CourierPop3d, redis_url: str, security: str
) -> None:
    """authdaemond's refusal becomes AuthError for the named account; nothing is deleted."""
    check_wrong_password(tmp_path, courier, courier.add_user(), security, redis_url)


def test_capabilities_announce_login_delay_and_stls(courier: CourierPop3d) -> None:
    """CAPA over STLS names Courier, UIDL and the LOGIN-DELAY 10 the poll has to honour."""
    user = courier.add_user()
    with open_session(endpoint_for(courier, "starttls"), Credentials("password", *user)) as s:
        assert s.encrypted
        assert s.capabilities["IMPLEMENTATION"].startswith("Courier")
        assert s.capabilities["LOGIN-DELAY"] == "10" and "UIDL" in s.capabilities
        s.reset_and_quit()
    courier.wait_idle()


UTF8_HEADERS = (
    "From: Jürgen Müller <jürgen@exämple.de>\nSubject: Grüße, 日本語\n"
    "Message-ID: <utf8@courier.test>\nContent-Type: text/plain; charset=utf-8\n\nHallo\n"
).encode()


def test_message_with_utf8_header_fields_is_ingested_as_stored(
    tmp_path: Path, courier: CourierPop3d, redis_url: str
) -> None:
    """Regression: without RFC 6856 UTF8 Courier serves a message with UTF-8 header fields as
    a "Cannot display Unicode content" notice with a per-session boundary; our client
    enables UTF8, stores the message itself once, and a second poll stores nothing."""
    user = courier.add_user()
    courier.deliver(user.name, UTF8_HEADERS)
    ((_, notice),) = served(courier, user, "plain", utf8=False)
    assert b"Cannot display Unicode content" in notice
    store = tmp_path / "store"
    acct = account_for(courier, user, "starttls", delete="never")
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    env = {password_env("support"): user.password}
    assert "stored 1" in poll_until_unlocked(cfg, env)
    courier.wait_idle()
    (eml,) = store.rglob("*.eml")
    assert eml.read_bytes() == maildir_file(UTF8_HEADERS).replace(b"\n", b"\r\n")
    again = poll_until_unlocked(cfg, env)  # deferred (exit 75) until LOGIN-DELAY has passed
    assert "fetched 0, stored 0" in again and "already stored 1" in again, again
    assert len(list(store.rglob("*.eml"))) == 1

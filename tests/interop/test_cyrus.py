"""Interoperability: `ingest poll` against Cyrus IMAP's pop3d (cyrus-pop3d): plain, STLS and
implicit TLS; USER/PASS, APOP and SASL PLAIN against a private sasldb; mail delivered over
LMTP, which rewrites it (``harness.cyrus``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_checks import (
    MESSAGES,
    check_keep_mode,
    check_stores_exactly_and_empties,
    check_wrong_password,
    corpus_sample,
    private_server,
)

from harness import MailUser, MotoS3
from harness.cyrus import CyrusPop3d, missing_prerequisites

MODES = ["plain", "starttls", "tls"]


@pytest.fixture(scope="module")
def cyrus() -> Iterator[CyrusPop3d]:
    with private_server(missing_prerequisites(), "ingest-cyrus-", CyrusPop3d) as server:
        yield server


def _lmtp_acceptable(messages: list[bytes]) -> list[bytes]:
    """Those lmtpd takes: it refuses a message whose first line is not a header field."""
    return [raw for raw in messages if re.match(rb"[!-9;-~]+:", raw)]


def _user(server: CyrusPop3d) -> MailUser:
    return server.add_user(f"ingtcyr{secrets.token_hex(4)}", secrets.token_urlsafe(12))


@pytest.mark.parametrize("security", MODES)
def test_poll_stores_every_message_exactly_as_served_and_empties_the_inbox(
    tmp_path: Path, cyrus: CyrusPop3d, s3_server: MotoS3, bucket: str, redis_url: str,
    security: str,
) -> None:  # fmt: skip
    """Each message is stored once, byte for byte as RETR serves it (with the trace fields
    LMTP delivery added), the INBOX is emptied, and a second poll adds nothing."""
    got = check_stores_exactly_and_empties(
        tmp_path, cyrus, _user(cyrus), security, s3=s3_server, bucket=bucket,
        redis_url=redis_url, messages=MESSAGES + _lmtp_acceptable(corpus_sample()),
    )  # fmt: skip
    for _, raw in got:
        assert raw.startswith(b"Return-Path: ") and b"\r\nX-Cyrus-Session-Id: " in raw


@pytest.mark.parametrize("security", MODES)
def test_keep_mode_second_poll_fetches_nothing(
    tmp_path: Path, cyrus: CyrusPop3d, redis_url: str, security: str
) -> None:
    """delete: never leaves the INBOX untouched and a second poll retrieves nothing."""
    check_keep_mode(tmp_path, cyrus, _user(cyrus), security, redis_url)


@pytest.mark.parametrize("security", MODES)
def test_wrong_password_is_an_auth_error_naming_the_account(
    tmp_path: Path, cyrus: CyrusPop3d, redis_url: str, security: str
) -> None:
    """Cyrus' -ERR [AUTH] becomes AuthError for the named account; nothing is deleted."""
    check_wrong_password(tmp_path, cyrus, _user(cyrus), security, redis_url)


@pytest.mark.parametrize("auth", ["apop", "sasl_plain"])
def test_apop_and_sasl_plain_logins_store_and_empty(
    tmp_path: Path, cyrus: CyrusPop3d, s3_server: MotoS3, bucket: str, redis_url: str, auth: str
) -> None:
    """auth: apop (over plain) and auth: sasl_plain (over STLS) log in with the sasldb secret."""
    security = "plain" if auth == "apop" else "starttls"
    check_stores_exactly_and_empties(
        tmp_path, cyrus, _user(cyrus), security, s3=s3_server, bucket=bucket,
        redis_url=redis_url, messages=MESSAGES[:2], auth=auth,
    )  # fmt: skip

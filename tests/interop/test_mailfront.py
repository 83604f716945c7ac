"""Interoperability: `ingest poll` against mailfront's pop3front (plain POP3, Maildir, logins
checked by cvm-pwfile) (``harness.mailfront``)."""

from __future__ import annotations

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

from harness import MotoS3
from harness.mailfront import Mailfront, as_mailfront_pop3, missing_prerequisites


@pytest.fixture(scope="module")
def mailfront() -> Iterator[Mailfront]:
    with private_server(missing_prerequisites(), "ingest-mailfront-", Mailfront) as server:
        yield server


def test_poll_stores_every_message_exactly_as_served_and_empties_the_maildir(
    tmp_path: Path, mailfront: Mailfront, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Each message is stored once, byte for byte as RETR serves it (with the empty line
    pop3front adds), the Maildir is emptied, and a second poll adds nothing."""
    messages = MESSAGES + corpus_sample()
    got = check_stores_exactly_and_empties(
        tmp_path, mailfront, mailfront.add_user(), "plain", s3=s3_server, bucket=bucket,
        redis_url=redis_url, messages=messages,
    )  # fmt: skip
    assert sorted(raw for _, raw in got) == sorted(as_mailfront_pop3(raw) for raw in messages)


def test_keep_mode_second_poll_fetches_nothing(
    tmp_path: Path, mailfront: Mailfront, redis_url: str
) -> None:
    """delete: never leaves the Maildir untouched and a second poll retrieves nothing."""
    check_keep_mode(tmp_path, mailfront, mailfront.add_user(), "plain", redis_url)


def test_wrong_password_is_an_auth_error_naming_the_account(
    tmp_path: Path, mailfront: Mailfront, redis_url: str
) -> None:
    """cvm-pwfile's refusal becomes AuthError for the named account; nothing is deleted."""
    check_wrong_password(tmp_path, mailfront, mailfront.add_user(), "plain", redis_url)

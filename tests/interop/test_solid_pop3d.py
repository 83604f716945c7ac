"""Interoperability: `ingest poll` against Solid POP3 (solid-pop3d): plain POP3 without CAPA,
USER/PASS against PAM and APOP, serving a Maildir or an mbox (``harness.solid_pop3d``)."""

from __future__ import annotations

import functools
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
from harness.solid_pop3d import SolidPop3d, as_solid_pop3, missing_prerequisites


@pytest.fixture(scope="module", params=["maildir", "mailbox"])
def solid(request: pytest.FixtureRequest) -> Iterator[SolidPop3d]:
    kind = request.param
    make = functools.partial(SolidPop3d, kind=kind)
    with private_server(missing_prerequisites(), f"ingest-solid-{kind}-", make) as server:
        yield server


def test_poll_stores_every_message_exactly_as_served_and_empties_the_drop(
    tmp_path: Path, solid: SolidPop3d, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Each message is stored once, byte for byte as RETR serves it (as_solid_pop3), the
    drop is emptied, and a second poll adds nothing."""
    user = solid.add_user()
    messages = MESSAGES + corpus_sample()
    got = check_stores_exactly_and_empties(
        tmp_path, solid, user, "plain", s3=s3_server, bucket=bucket, redis_url=redis_url,
        messages=messages,
    )  # fmt: skip
    assert sorted(raw for _, raw in got) == sorted(as_solid_pop3(r, solid.kind) for r in messages)


def test_keep_mode_second_poll_fetches_nothing(
    tmp_path: Path, solid: SolidPop3d, redis_url: str
) -> None:
    """delete: never leaves the drop untouched and a second poll retrieves nothing."""
    check_keep_mode(tmp_path, solid, solid.add_user(), "plain", redis_url)


def test_wrong_password_is_an_auth_error_naming_the_account(
    tmp_path: Path, solid: SolidPop3d, redis_url: str
) -> None:
    """PAM's refusal becomes AuthError for the named account; nothing is deleted."""
    check_wrong_password(tmp_path, solid, solid.add_user(), "plain", redis_url)


def test_apop_login_stores_and_empties(
    tmp_path: Path, solid: SolidPop3d, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """auth: apop with the user's ~/.spop3d secret logs in (no password on the wire)."""
    user = solid.add_user(apop_secret="apop-secret-1")
    check_stores_exactly_and_empties(
        tmp_path, solid, user, "plain", s3=s3_server, bucket=bucket, redis_url=redis_url,
        messages=MESSAGES[:2], auth="apop", poll_password="apop-secret-1",
    )  # fmt: skip

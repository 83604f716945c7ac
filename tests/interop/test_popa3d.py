"""Interoperability: `ingest poll` against Openwall popa3d (plain POP3, no CAPA, mbox).

popa3d runs per connection from ``harness.inetd.Inetd`` (as inetd would), authenticates a
throw-away system user and serves its ``/var/mail`` mbox byte for byte (``>From`` lines
stay quoted, LF becomes CRLF). Its UIDL is a digest of the envelope line and some header
fields, so each message gets a distinct Message-ID here.
"""

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
    private_server,
    served,
)
from support import password_env, run_cli, write_config

from harness import MotoS3
from harness.popa3d import Popa3d, missing_prerequisites


@pytest.fixture(scope="module")
def popa3d() -> Iterator[Popa3d]:
    with private_server(missing_prerequisites(), "ingest-popa3d-", Popa3d) as server:
        yield server


def test_poll_stores_what_popa3d_serves_and_empties_the_mailbox(
    tmp_path: Path, popa3d: Popa3d, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Every message lands as RETR returns it, the mbox is emptied, a second poll adds nothing."""
    check_stores_exactly_and_empties(
        tmp_path, popa3d, popa3d.add_user(), "plain", s3=s3_server, bucket=bucket,
        redis_url=redis_url, messages=MESSAGES + corpus_sample(),
    )  # fmt: skip


def test_keep_mode_second_poll_fetches_nothing(
    tmp_path: Path, popa3d: Popa3d, redis_url: str
) -> None:
    """delete: never leaves the mbox untouched and a second poll retrieves nothing."""
    check_keep_mode(tmp_path, popa3d, popa3d.add_user(), "plain", redis_url)


def test_wrong_password_is_an_auth_error_naming_the_account(
    tmp_path: Path, popa3d: Popa3d, redis_url: str
) -> None:
    """PAM's refusal becomes AuthError for the named account; nothing is deleted."""
    check_wrong_password(tmp_path, popa3d, popa3d.add_user(), "plain", redis_url)


def test_duplicate_uidls_from_popa3d_are_ingested_by_content_identity(
    tmp_path: Path, popa3d: Popa3d, redis_url: str
) -> None:
    """popa3d gives two header-poor messages one UIDL; both are stored and deleted anyway."""
    user = popa3d.add_user()
    twins = [b"Subject: first twin\n\nbody one\n", b"Subject: second twin\n\nbody two\n"]
    for raw in twins:
        popa3d.deliver(user.name, raw)
    got = served(popa3d, user, "plain")
    if len({uidl for uidl, _ in got}) != 1:
        pytest.fail(f"popa3d did not repeat the UIDL this time: {[u for u, _ in got]}")
    store = tmp_path / "store"
    acct = account_for(popa3d, user, "plain")
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    result = run_cli(cfg, "poll", "support", env={password_env("support"): user.password})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored 2" in result.stdout and "deleted 2" in result.stdout
    assert sorted(p.read_bytes() for p in store.rglob("*.eml")) == sorted(r for _, r in got)
    popa3d.wait_idle()
    assert popa3d.message_count(user.name) == 0

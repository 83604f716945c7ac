"""Interoperability: `ingest poll` against Openwall popa3d (plain POP3, no CAPA, mbox).

popa3d runs per connection from ``harness.inetd.Inetd`` (as inetd would), authenticates a
throw-away system user and serves its ``/var/mail`` mbox byte for byte (``>From`` lines
stay quoted, LF becomes CRLF). Its UIDL is a digest of the envelope line and some header
fields, so each message gets a distinct Message-ID here.
"""

from __future__ import annotations

import hashlib
import json
import poplib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import (
    account_entry,
    bucket_objects,
    password_env,
    run_cli,
    split_objects,
    write_config,
)

from harness import MailUser, MotoS3
from harness.popa3d import Popa3d, missing_prerequisites

MESSAGES = [
    b"From: a@example.com\nMessage-ID: <1@popa3d.test>\nSubject: one\n\nhello\n",
    b"From: b@example.com\r\nMessage-ID: <2@popa3d.test>\r\nSubject: two\r\n\r\n"
    b".a line starting with a dot\r\n.\r\n..two\r\nno final newline",
    b"From: c@example.com\nMessage-ID: <3@popa3d.test>\nSubject: three\n\n"
    b"From me\n" + b"y" * 1500 + b"\n",
]


@pytest.fixture(scope="module")
def popa3d() -> Iterator[Popa3d]:
    missing = missing_prerequisites()
    if missing:
        pytest.skip(missing)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-popa3d-"))
    try:
        with Popa3d(workdir) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _served(server: Popa3d, user: MailUser) -> dict[str, bytes]:
    """UIDL -> RETR bytes (CRLF lines, dot-unstuffed) as stdlib poplib sees them; RSET, QUIT."""
    pop = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        pop.user(user.name)
        pop.pass_(user.password)
        served = {}
        for line in pop.uidl()[1]:
            number, uidl = line.decode().split()
            served[uidl] = b"".join(part + b"\r\n" for part in pop.retr(int(number))[1])
        pop.rset()
    finally:
        pop.quit()
    server.wait_idle()
    return served


def test_poll_stores_what_popa3d_serves_and_empties_the_mailbox(
    tmp_path: Path, popa3d: Popa3d, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Every message lands as RETR returns it, the mbox is emptied, a second poll adds nothing."""
    user = popa3d.add_user()
    for raw in MESSAGES:
        popa3d.deliver(user.name, raw)
    served = _served(popa3d, user)
    assert len(served) == len(MESSAGES)

    acct = account_entry(popa3d, user, security="plain", allow_plaintext=True)  # type: ignore[arg-type]
    del acct["ca_file"]
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket, accounts=[acct]
    )
    env = {password_env("support"): user.password}
    first = run_cli(cfg, "poll", "support", env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"stored {len(MESSAGES)}" in first.stdout

    objects = bucket_objects(s3_server, bucket)
    raws, docs = split_objects(objects)
    stored = {}
    for body in docs.values():
        doc = json.loads(body)
        assert hashlib.sha256(raws[doc["raw_key"]]).hexdigest() == doc["sha256"]
        stored[doc["uidl"]] = raws[doc["raw_key"]]
    assert stored == served
    popa3d.wait_idle()
    assert popa3d.message_count(user.name) == 0

    second = run_cli(cfg, "poll", "support", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "listed 0, fetched 0, stored 0" in second.stdout
    assert bucket_objects(s3_server, bucket).keys() == objects.keys()


def test_duplicate_uidls_from_popa3d_are_ingested_by_content_identity(
    tmp_path: Path, popa3d: Popa3d, redis_url: str
) -> None:
    """popa3d gives two header-poor messages one UIDL; both are stored and deleted anyway."""
    user = popa3d.add_user()
    twins = [b"Subject: first twin\n\nbody one\n", b"Subject: second twin\n\nbody two\n"]
    for raw in twins:
        popa3d.deliver(user.name, raw)
    served = _served_list(popa3d, user)
    if len({uidl for uidl, _ in served}) != 1:
        pytest.fail(f"popa3d did not repeat the UIDL this time: {[u for u, _ in served]}")
    acct = account_entry(popa3d, user, security="plain", allow_plaintext=True)  # type: ignore[arg-type]
    del acct["ca_file"]
    store = tmp_path / "store"
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, accounts=[acct])
    result = run_cli(cfg, "poll", "support", env={password_env("support"): user.password})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stored 2" in result.stdout and "deleted 2" in result.stdout
    assert sorted(p.read_bytes() for p in store.rglob("*.eml")) == sorted(r for _, r in served)
    popa3d.wait_idle()
    assert popa3d.message_count(user.name) == 0


def _served_list(server: Popa3d, user: MailUser) -> list[tuple[str, bytes]]:
    """(UIDL, RETR bytes) in message order, duplicates kept; RSET, QUIT."""
    pop = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        pop.user(user.name)
        pop.pass_(user.password)
        served = []
        for line in pop.uidl()[1]:
            number, uidl = line.decode().split()
            served.append((uidl, b"".join(p + b"\r\n" for p in pop.retr(int(number))[1])))
        pop.rset()
    finally:
        pop.quit()
    server.wait_idle()
    return served

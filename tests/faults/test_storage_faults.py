"""S3 faults injected by an HTTP proxy in front of moto, under real `ingest poll` processes.

Each poll test checks the invariants after the faulty poll and after one clean poll: every
raw object is byte-exact, with one JSON document naming it and no other object; a message
whose raw object was not verified is still on the server; the mailbox is empty at the end.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support import (
    account_entry,
    bucket_objects,
    password_env,
    run_cli,
    split_objects,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, as_pop3, corpus_files
from harness.s3_proxy import Action, Rule, S3FaultProxy, corrupt, error, ignore_conditional_writes
from ingest import keys
from ingest.config import StorageConfig
from ingest.errors import TransientError
from ingest.spool import Spool
from ingest.store_s3 import S3Store

MESSAGES = 3
PREFIX = "faults"
TIMEOUT = 2  # storage.timeout: connect and read, seconds
MAX_ATTEMPTS = 3  # storage.max_attempts
RAW = "/raw/"


@pytest.fixture
def proxy(s3_server: MotoS3) -> Iterator[S3FaultProxy]:
    """A fault proxy in front of the session's moto server, with no rules yet."""
    with S3FaultProxy(s3_server.endpoint_url) as running:
        yield running


class Setup:
    """A mailbox with MESSAGES corpus messages and a config whose storage goes via the proxy."""

    def __init__(
        self,
        tmp_path: Path,
        dovecot: Dovecot,
        user: MailUser,
        s3: MotoS3,
        bucket: str,
        redis_url: str,
        proxy: S3FaultProxy,
    ) -> None:
        self.dovecot, self.user, self.s3, self.bucket, self.proxy = dovecot, user, s3, bucket, proxy
        self.expected: list[bytes] = []
        for path in corpus_files()[40 : 40 + MESSAGES]:
            dovecot.deliver(user.name, path.read_bytes())
            self.expected.append(as_pop3(path.read_bytes()))
        assert len(set(self.expected)) == MESSAGES, "the corpus should give distinct messages"
        self.cfg = write_config(
            tmp_path / "c.yaml",
            redis_url=redis_url,
            s3=s3,
            bucket=bucket,
            prefix=PREFIX,
            accounts=[account_entry(dovecot, user)],
            # One message stored at a time, so "the n-th PUT" is always the same message's;
            # what each PUT does under a fault does not depend on concurrency.
            store_concurrency=1,
        )
        data = yaml.safe_load(self.cfg.read_text())
        data["storage"].update(
            endpoint_url=proxy.endpoint_url,
            addressing_style="path",
            timeout=TIMEOUT,
            max_attempts=MAX_ATTEMPTS,
        )
        self.cfg.write_text(yaml.safe_dump(data))
        self.env = {password_env("support"): user.password}

    def raw_key(self, index: int) -> str:
        """The raw object key of message ``index`` (0-based, in delivery order)."""
        sha = hashlib.sha256(self.expected[index]).hexdigest()
        return keys.raw_key(PREFIX, "support", sha)

    def poll(self, *, ok: bool) -> str:
        """Run one `ingest poll`; return stdout if ``ok`` is expected, else stderr (exit 1)."""
        result = run_cli(self.cfg, "poll", "support", env=self.env, timeout=60)
        if ok:
            assert result.returncode == 0, result.stderr[-3000:]
            assert "support: ok" in result.stdout
            return result.stdout
        assert result.returncode == 1, result.stdout + result.stderr[-3000:]
        assert "support: failed:" in result.stderr
        return result.stderr

    def statuses(self, method: str, key: str) -> list[int | None]:
        """What the client got for each ``method`` request on ``key``, in order."""
        return [e.status for e in self.proxy.requests(method, f"/{re.escape(key)}(\\?|$)")]

    def assert_consistent(self, *, complete: bool) -> None:
        """No stray or wrong object; with ``complete``, every message once and an empty box."""
        objects = bucket_objects(self.s3, self.bucket)
        raws, docs = split_objects(objects)
        attachments = [k for k in objects if "/att/" in k]
        assert len(objects) == len(raws) + len(docs) + len(attachments)
        assert set(raws.values()) <= set(self.expected)
        assert len(set(raws.values())) == len(raws)
        assert len(docs) <= len(raws)
        for body in docs.values():
            doc = json.loads(body)
            assert hashlib.sha256(raws[doc["raw_key"]]).hexdigest() == doc["sha256"]
        if complete:
            assert sorted(raws.values()) == sorted(self.expected)
            assert len(docs) == len(raws)
            assert self.dovecot.message_count(self.user.name) == 0
        else:  # nothing is committed after a failure: every message is still on the server
            assert self.dovecot.message_count(self.user.name) == MESSAGES

    def recover(self, *, fetched: int) -> None:
        """One poll without faults completes the job exactly; a further one has nothing to do."""
        self.proxy.clear()
        out = self.poll(ok=True)
        assert f"fetched {fetched}," in out and f"deleted {MESSAGES}," in out
        self.assert_consistent(complete=True)
        self.poll_clean_is_idle()

    def poll_clean_is_idle(self) -> None:
        """A poll without faults finds nothing left to do and changes nothing."""
        self.proxy.clear()
        before = bucket_objects(self.s3, self.bucket)
        assert "listed 0, fetched 0, stored 0" in self.poll(ok=True)
        assert bucket_objects(self.s3, self.bucket) == before
        self.assert_consistent(complete=True)


@pytest.fixture
def box(
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
    proxy: S3FaultProxy,
) -> Setup:
    """Three messages waiting, and a config pointing the store at the fault proxy."""
    return Setup(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, proxy)


def test_slowdown_on_raw_puts_is_retried_transparently(box: Setup) -> None:
    """Two 503 SlowDown replies to a raw PUT are absorbed by retries; the poll succeeds at once."""
    box.proxy.add(error("PUT", RAW, 503, "SlowDown", nth=2, times=2))
    out = box.poll(ok=True)
    assert f"stored {MESSAGES} " in out and f"deleted {MESSAGES}," in out
    assert box.statuses("PUT", box.raw_key(1)) == [503, 503, 200]
    box.assert_consistent(complete=True)
    box.poll_clean_is_idle()


def test_persistent_internal_errors_end_the_poll_with_nothing_deleted(box: Setup) -> None:
    """500s beyond the retry budget fail the poll (exit 1, clear error); the next poll resumes."""
    box.proxy.add(error("PUT", RAW, 500, "InternalError", nth=2, times=None))
    err = box.poll(ok=False)
    assert f"support: failed: PUT {box.raw_key(1)}: InternalError" in err
    attempts = box.statuses("PUT", box.raw_key(1))
    # botocore's Config(retries={"max_attempts": n}) counts retries, so n + 1 requests are
    # made (see the report on make_s3_client); either reading proves the budget is bounded.
    assert attempts in ([500] * MAX_ATTEMPTS, [500] * (MAX_ATTEMPTS + 1))
    # The poll stopped at the failure: the message read ahead after it was not even tried.
    assert box.statuses("PUT", box.raw_key(2)) == []
    box.assert_consistent(complete=False)
    box.recover(fetched=MESSAGES - 1)


@pytest.mark.parametrize("forward", [False, True], ids=["lost-request", "stored-but-slow"])
def test_read_timeout_on_a_raw_put_is_retried(box: Setup, forward: bool) -> None:
    """A PUT whose reply outlasts the read timeout is retried; if it was stored, 412 verifies it."""
    box.proxy.add(Rule("PUT", RAW, Action.STALL, nth=2, seconds=TIMEOUT * 5, forward=forward))
    out = box.poll(ok=True)
    assert f"deleted {MESSAGES}," in out
    key = box.raw_key(1)
    assert box.statuses("PUT", key) == [None, 412 if forward else 200]
    assert box.statuses("HEAD", key) == ([200] if forward else [])
    box.assert_consistent(complete=True)
    box.poll_clean_is_idle()


def test_put_stored_but_reply_lost_is_verified_not_duplicated(box: Setup) -> None:
    """The retry of a PUT whose reply was lost gets 412, verifies the object by HEAD and goes on."""
    box.proxy.add(Rule("PUT", RAW, Action.LOSE_REPLY, nth=2))
    out = box.poll(ok=True)
    assert f"deleted {MESSAGES}," in out and "already stored 1," in out
    key = box.raw_key(1)
    assert [(e.status, e.upstream) for e in box.proxy.requests("PUT", key)] == [
        (None, 200),
        (412, 412),
    ]
    assert box.statuses("HEAD", key) == [200]
    box.assert_consistent(complete=True)
    box.poll_clean_is_idle()


@pytest.mark.parametrize(
    ("etag", "checksum", "reported"),
    [(True, False, "MD5"), (False, True, "SHA-256"), (True, True, "SHA-256")],
    ids=["etag", "checksum", "both"],
)
def test_wrong_digest_in_put_reply_is_refused(
    box: Setup, etag: bool, checksum: bool, reported: str
) -> None:
    """A PUT reply whose ETag or SHA-256 does not match ours is a StorageError: nothing deleted."""
    box.proxy.add(corrupt("PUT", RAW, etag=etag, checksum=checksum, nth=2))
    err = box.poll(ok=False)
    key = box.raw_key(1)
    assert f"support: failed: {key}: store reports {reported}" in err
    assert box.statuses("PUT", key) == [200]  # moto did store it, correctly
    box.assert_consistent(complete=False)
    # A refusal is this message's problem: the message read ahead after it was stored (and
    # marked) all the same, so the clean poll fetches only the refused one.
    assert box.statuses("PUT", box.raw_key(2)) == [200]
    box.recover(fetched=1)
    assert box.statuses("PUT", key) == [200, 412]  # the clean poll verified it by HEAD
    assert box.statuses("HEAD", key) == [200]


def test_wrong_checksum_on_head_of_an_existing_object_is_refused(box: Setup) -> None:
    """After a 412, a HEAD whose checksum does not match ours is refused: nothing deleted."""
    box.proxy.add(Rule("PUT", RAW, Action.LOSE_REPLY, nth=2))
    box.proxy.add(corrupt("HEAD", RAW))
    err = box.poll(ok=False)
    key = box.raw_key(1)
    assert f"support: failed: {key}: store reports SHA-256" in err
    assert box.statuses("PUT", key) == [None, 412]
    assert box.statuses("HEAD", key) == [200]
    box.assert_consistent(complete=False)
    box.recover(fetched=1)  # the message read ahead after the refused one was stored
    assert box.statuses("HEAD", key) == [200, 200]


def test_max_attempts_is_the_total_number_of_attempts(proxy: S3FaultProxy, bucket: str) -> None:
    """storage.max_attempts: 1 (the least the config allows) makes one request and no retry."""
    proxy.add(error("PUT", RAW, 500, "InternalError", times=None))
    cfg = StorageConfig(
        url=f"s3://{bucket}", endpoint_url=proxy.endpoint_url, timeout=TIMEOUT, max_attempts=1
    )
    data = b"Subject: once\r\n\r\nbody\r\n"
    with pytest.raises(TransientError, match="InternalError"):
        S3Store(cfg).put("x/raw/once.eml", Spool.of(data), "text/plain")
    assert len(proxy.requests("PUT", RAW)) == 1


def test_a_store_that_ignores_conditional_writes_is_refused(box: Setup) -> None:
    """`ingest check` and the worker's start-up check reject a store that drops If-None-Match."""
    box.proxy.add(ignore_conditional_writes())
    result = run_cli(box.cfg, "check", env=box.env)
    assert result.returncode == 1
    (line,) = [
        ln for ln in result.stdout.splitlines() if ln.startswith(("ok", "FAIL")) and "storage" in ln
    ]
    assert line.startswith("FAIL") and "ignores If-None-Match" in line
    box.proxy.clear()
    good = run_cli(box.cfg, "check", env=box.env)
    assert any(
        ln.startswith("ok") and "conditional writes" in ln for ln in good.stdout.splitlines()
    )

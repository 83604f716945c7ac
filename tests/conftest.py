"""Shared fixtures: real Redis, moto S3 and Dovecot on free loopback ports, one per session.

Servers start on first use and are stopped by PID when the session ends, failures included;
if pytest itself is killed they die with it (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the project is not necessarily pip-installed
    sys.path.insert(0, str(ROOT))

from harness import Dovecot, MailUser, MotoS3, RedisServer  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def aws_test_credentials() -> Iterator[None]:
    """Dummy AWS credentials for boto3, isolated from ~/.aws; restored after the session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
            mp.delenv(name, raising=False)
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the whole session."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis URL, flushed (FLUSHALL) before the test."""
    import redis  # noqa: PLC0415 - only tests that use Redis need the client

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """A moto S3 server for the whole session."""
    with MotoS3(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def bucket(s3_server: MotoS3) -> str:
    """The name of a fresh, empty bucket on the session S3 server."""
    name = f"test-{secrets.token_hex(8)}"
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def locked_bucket(s3_server: MotoS3) -> str:
    """A fresh bucket with versioning and Object Lock enabled (CreateBucket with lock)."""
    name = f"locked-{secrets.token_hex(8)}"
    s3_server.create_bucket(name, object_lock=True)
    return name


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """A private Dovecot for the whole session; its log is kept in pytest's temp dir.

    Its workdir comes from mkdtemp, not tmp_path: as root, Dovecot's mail user must traverse
    every parent directory, and pytest's are mode 0700.
    """
    workdir = Path(tempfile.mkdtemp(prefix="ingest-dovecot-"))
    server = Dovecot(workdir)
    try:
        with server:
            yield server
    finally:
        if server.log_path.exists():
            shutil.copy(server.log_path, tmp_path_factory.getbasetemp() / "dovecot.log")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def mail_user(dovecot: Dovecot) -> MailUser:
    """A fresh Dovecot user (``u<hex>``) with a random password and an empty mailbox."""
    return dovecot.add_user(f"u{secrets.token_hex(6)}", secrets.token_urlsafe(12))

"""Archive storage options against moto's S3 server (Object Lock, SSE, tags) and Dovecot."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from botocore.exceptions import ClientError
from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, MotoS3, as_pop3
from ingest import keys
from ingest.checks import startup_problems
from ingest.config import Settings
from ingest.config_load import load_settings
from ingest.ledger import RedisLedger, encode
from ingest.model import LedgerRecord
from ingest.service import poll_account

PLAIN = b"From: a@example.com\r\nMessage-ID: <plain-1@example.com>\r\nSubject: hi\r\n\r\nhello\r\n"
WITH_ATTACHMENT = (
    b"From: a@example.com\r\nMessage-ID: <att-1@example.com>\r\n"
    b"Date: Wed, 13 Jan 2016 12:04:57 +0200\r\nSubject: file\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
    b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n"
    b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="x.bin"'
    b"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQFBgcICQ==\r\n--b--\r\n"
)
HOSTILE = (
    b'From: a@example.com\r\nMessage-ID: <caf\xc3\xa9%0D%0A"q"\tX-Evil: 1@example.com>\r\n'
    b"Subject: hostile\r\n\r\nbody\r\n"
)


def _config(
    tmp_path: Path,
    dovecot: Dovecot,
    user: MailUser,
    s3: MotoS3,
    bucket: str,
    redis_url: str,
    storage: dict[str, Any],
    **account: Any,
) -> Path:
    path = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3, bucket=bucket, prefix="mail",
        accounts=[account_entry(dovecot, user, **account)],
    )  # fmt: skip
    data = yaml.safe_load(path.read_text())
    data["storage"].update(storage)
    path.write_text(yaml.safe_dump(data))
    return path


def _poll(cfg: Path, user: MailUser, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(password_env("support"), user.password)
    settings = load_settings(cfg)
    assert poll_account(settings, "support").outcome == "ok"
    return settings


def _records(redis_url: str) -> dict[str, LedgerRecord]:
    return RedisLedger(redis.Redis.from_url(redis_url), "support", "", 1).all_records()


def _raw_key(raw: bytes) -> str:
    import hashlib  # noqa: PLC0415

    return keys.raw_key("mail", "support", hashlib.sha256(as_pop3(raw)).hexdigest())


def test_compliance_retention_locks_raw_and_attachments_and_is_recorded(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    locked_bucket: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Compliance mode: the raw version cannot be deleted, an overwrite leaves it in place,
    attachments are locked too, JSON is not, and the ledger records what HEAD shows."""
    dovecot.deliver(mail_user.name, WITH_ATTACHMENT)
    lock = {"object_lock": {"mode": "compliance", "days": 30}}
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, locked_bucket, redis_url, lock)
    before = datetime.now(UTC)
    _poll(cfg, mail_user, monkeypatch)
    client = s3_server.client()
    key = _raw_key(WITH_ATTACHMENT)
    head = client.head_object(Bucket=locked_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert before + timedelta(days=29) < until < before + timedelta(days=31)
    with pytest.raises(ClientError) as err:
        client.delete_object(Bucket=locked_bucket, Key=key, VersionId=head["VersionId"])
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError):
        client.delete_object(
            Bucket=locked_bucket, Key=key, VersionId=head["VersionId"],
            BypassGovernanceRetention=True,
        )  # fmt: skip
    client.put_object(Bucket=locked_bucket, Key=key, Body=b"tampered")
    versions = client.list_object_versions(Bucket=locked_bucket, Prefix=key)["Versions"]
    assert len(versions) == 2 and head["VersionId"] in {v["VersionId"] for v in versions}
    kept = client.get_object(Bucket=locked_bucket, Key=key, VersionId=head["VersionId"])
    assert kept["Body"].read() == as_pop3(WITH_ATTACHMENT)
    (att,) = [k for k in _keys(client, locked_bucket) if "/att/" in k]
    assert client.head_object(Bucket=locked_bucket, Key=att)["ObjectLockMode"] == "COMPLIANCE"
    (doc,) = [k for k in _keys(client, locked_bucket) if "/json/" in k]
    assert "ObjectLockMode" not in client.head_object(Bucket=locked_bucket, Key=doc)
    (record,) = _records(redis_url).values()
    assert record.storage["lock_mode"] == "COMPLIANCE"
    assert record.storage["version_id"] == head["VersionId"]
    assert record.storage["retain_until"] == until.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_governance_retention_and_legal_hold(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    locked_bucket: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Governance mode refuses a delete without the bypass; the legal hold is ON."""
    dovecot.deliver(mail_user.name, PLAIN)
    storage = {"object_lock": {"mode": "governance", "days": 1}, "legal_hold": True}
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, locked_bucket, redis_url, storage)
    _poll(cfg, mail_user, monkeypatch)
    client = s3_server.client()
    key = _raw_key(PLAIN)
    head = client.head_object(Bucket=locked_bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    hold = client.get_object_legal_hold(Bucket=locked_bucket, Key=key)
    assert hold["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as err:
        client.delete_object(Bucket=locked_bucket, Key=key, VersionId=head["VersionId"])
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    (record,) = _records(redis_url).values()
    assert record.storage["legal_hold"] == "ON" and record.storage["lock_mode"] == "GOVERNANCE"


def test_sse_kms_sse_s3_class_metadata_and_tags_are_sent_and_recorded(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    bucket: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """SSE-KMS with its key id, the storage class, metadata and tags show on HEAD; an account
    overriding to SSE-S3 gets AES256; a hostile Message-ID arrives as safe ASCII."""
    key_id = s3_server.create_kms_key()
    dovecot.deliver(mail_user.name, HOSTILE)
    dovecot.deliver(mail_user.name, WITH_ATTACHMENT)
    storage = {"sse": "kms", "kms_key_id": key_id, "storage_class": "STANDARD_IA", "tags": True}
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, storage)
    _poll(cfg, mail_user, monkeypatch)
    client = s3_server.client()
    for key in _keys(client, bucket):
        head = client.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_id)
        assert head["StorageClass"] == "STANDARD_IA"
        assert head["Metadata"]["account"] == "support"
    hostile = _raw_key(HOSTILE)
    meta = client.head_object(Bucket=bucket, Key=hostile)["Metadata"]
    assert meta["message-id"] == 'caf%EF%BF%BD%EF%BF%BD%250D%250A"q"%09X-Evil:%201@example.com'
    assert meta["kind"] == "raw" and meta["sha256"] in hostile
    tags = {t["Key"]: t["Value"] for t in client.get_object_tagging(Bucket=bucket, Key=hostile)[
        "TagSet"]}  # fmt: skip
    assert tags["message-id"] == "caf___0D_0A_q__X-Evil: 1@example.com"
    assert tags["account"] == "support" and tags["kind"] == "raw"
    dated = client.head_object(Bucket=bucket, Key=_raw_key(WITH_ATTACHMENT))["Metadata"]
    assert dated["date"] == "2016-01-13T10:04:57Z"
    records = _records(redis_url).values()
    assert {(r.storage["sse"], r.storage["kms_key_id"]) for r in records} == {("aws:kms", key_id)}
    assert {r.storage["storage_class"] for r in records} == {"STANDARD_IA"}


def test_an_account_override_to_sse_s3(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    bucket: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """storage_options on the account replace the default KMS encryption with SSE-S3."""
    dovecot.deliver(mail_user.name, PLAIN)
    storage = {"sse": "kms", "kms_key_id": s3_server.create_kms_key()}
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, storage,
                  storage_options={"sse": "s3"})  # fmt: skip
    _poll(cfg, mail_user, monkeypatch)
    client = s3_server.client()
    for key in _keys(client, bucket):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in head


def test_startup_check_refuses_a_bucket_without_object_lock_and_a_missing_kms_key(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    bucket: str, redis_url: str,
) -> None:  # fmt: skip
    """`ingest check` and the worker's start-up refuse, naming the account, instead of
    letting polls write without the configured protection."""
    storage = {"object_lock": {"mode": "compliance", "days": 1}, "sse": "kms",
               "kms_key_id": "11111111-2222-3333-4444-555555555555"}  # fmt: skip
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, storage)
    check = run_cli(cfg, "check", env={password_env("support"): mail_user.password})
    assert check.returncode == 1
    fails = [line for line in check.stdout.splitlines() if line.startswith("FAIL")]
    assert any("Object Lock is not enabled" in f and "accounts(support)" in f for f in fails)
    assert any("no such KMS key" in f and "accounts(support)" in f for f in fails)
    problems = startup_problems(load_settings(cfg))  # what refuses a worker's start
    assert any("Object Lock is not enabled" in p for p in problems)
    assert any("no such KMS key" in p for p in problems)


def test_startup_check_passes_when_the_bucket_and_key_are_there(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    locked_bucket: str, redis_url: str,
) -> None:  # fmt: skip
    """A lock-enabled bucket and an existing key give an ok line for the storage options."""
    storage = {"object_lock": {"mode": "governance", "days": 1}, "sse": "kms",
               "kms_key_id": s3_server.create_kms_key()}  # fmt: skip
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, locked_bucket, redis_url, storage)
    check = run_cli(cfg, "check", env={password_env("support"): mail_user.password})
    assert check.returncode == 0, check.stdout
    assert "ok    storage options: Object Lock enabled" in check.stdout


def test_reparse_replaces_json_on_a_locked_bucket_keeping_encryption(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    locked_bucket: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """JSON is not locked: reparse writes a new version (with the account's SSE), raw stays."""
    dovecot.deliver(mail_user.name, PLAIN)
    storage = {"object_lock": {"mode": "compliance", "days": 1}, "sse": "s3"}
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, locked_bucket, redis_url, storage)
    _poll(cfg, mail_user, monkeypatch)
    client = s3_server.client()
    (doc,) = [k for k in _keys(client, locked_bucket) if "/json/" in k]
    client.put_object(Bucket=locked_bucket, Key=doc, Body=b"{}")  # an outdated document
    result = run_cli(cfg, "reparse", "support")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 document(s) rewritten" in result.stdout
    got = client.get_object(Bucket=locked_bucket, Key=doc)
    assert json.loads(got["Body"].read())["message_id"] == "plain-1@example.com"
    assert got["ServerSideEncryption"] == "AES256" and "ObjectLockMode" not in got
    raw_versions = client.list_object_versions(Bucket=locked_bucket, Prefix=_raw_key(PLAIN))
    assert len(raw_versions["Versions"]) == 1


def test_after_days_keeps_mail_on_the_server_until_it_is_due(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3,
    bucket: str, redis_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """delete: after_days:2 stores at once, leaves the mail, and DELEs it once 2 days old."""
    dovecot.deliver(mail_user.name, PLAIN)
    dovecot.deliver(mail_user.name, WITH_ATTACHMENT)
    cfg = _config(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, {},
                  delete="after_days:2")  # fmt: skip
    settings = _poll(cfg, mail_user, monkeypatch)
    assert dovecot.message_count(mail_user.name) == 2
    assert len([k for k in _keys(s3_server.client(), bucket) if "/raw/" in k]) == 2
    report = poll_account(settings, "support")
    assert (report.stored, report.deleted, dovecot.message_count(mail_user.name)) == (0, 0, 2)
    _age(redis_url, days=2, only=_raw_key(PLAIN))
    report = poll_account(settings, "support")
    assert (report.fetched, report.deleted, dovecot.message_count(mail_user.name)) == (0, 1, 1)
    states = {r.raw_key: r.state.value for r in _records(redis_url).values()}
    assert states == {_raw_key(PLAIN): "deleted", _raw_key(WITH_ATTACHMENT): "stored"}


def _age(redis_url: str, days: float, only: str) -> None:
    """Pretend the message stored under raw key ``only`` was stored ``days`` days ago."""
    client = redis.Redis.from_url(redis_url)
    for uidl, record in _records(redis_url).items():
        if record.raw_key == only:
            older = LedgerRecord(**{**_fields(record), "stored_at": time.time() - days * 86400})
            client.hset(keys.ledger_key("support"), uidl, encode(older))


def _fields(record: LedgerRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


def test_create_only_writes_stay_exactly_once_on_a_versioned_locked_bucket(
    s3_server: MotoS3, locked_bucket: str
) -> None:
    """If-None-Match still refuses a second PUT on a versioned bucket: one version, and the
    existing object's lock (read by HEAD) is what gets recorded for it."""
    from ingest.config import StorageConfig  # noqa: PLC0415
    from ingest.interfaces import Put  # noqa: PLC0415
    from ingest.object_params import ObjectWriter  # noqa: PLC0415
    from ingest.spool import Spool  # noqa: PLC0415
    from ingest.storage_options import ObjectLockConfig, StorageOptions  # noqa: PLC0415
    from ingest.store_s3 import S3Store  # noqa: PLC0415

    cfg = StorageConfig(url=f"s3://{locked_bucket}/mail", endpoint_url=s3_server.endpoint_url)
    options = StorageOptions(object_lock=ObjectLockConfig(mode="governance", days=2))
    store = S3Store(cfg).for_account(ObjectWriter("support", "mail/support", options))
    key = _raw_key(PLAIN)
    assert store.put(key, Spool.of(as_pop3(PLAIN)), "message/rfc822") is Put.CREATED
    first = store.protection(key)
    again = S3Store(cfg).for_account(ObjectWriter("support", "mail/support", options))
    assert again.put(key, Spool.of(as_pop3(PLAIN)), "message/rfc822") is Put.EXISTED
    versions = s3_server.client().list_object_versions(Bucket=locked_bucket, Prefix=key)
    assert len(versions["Versions"]) == 1
    assert again.protection(key)["retain_until"] == first["retain_until"]
    assert again.protection(key)["version_id"] == first["version_id"]

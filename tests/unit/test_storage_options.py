"""Storage options and delete modes in the config, and the S3 parameters built from them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest

from ingest.config_load import parse_settings
from ingest.errors import ConfigError
from ingest.object_params import (
    ObjectWriter,
    facts_for,
    message_date,
    meta_value,
    put_params,
    tag_value,
)
from ingest.spool import Spool
from ingest.storage_options import StorageOptions

ACCOUNT = {"name": "support", "host": "pop.example.com", "username": "u", "password_env": "PW"}


def _settings(storage: dict[str, Any] | None = None, **account: Any) -> Any:
    data = {
        "storage": {"url": "s3://bucket/pre", **(storage or {})},
        "accounts": [{**ACCOUNT, **account}],
    }
    return parse_settings(data, "/etc/ingest.yaml")


def _problems(storage: dict[str, Any] | None = None, **account: Any) -> str:
    with pytest.raises(ConfigError) as err:
        _settings(storage, **account)
    return "\n".join(err.value.problems)


@pytest.mark.parametrize(
    ("given", "mode", "days"),
    [
        ("after_store", "after_store", None),
        ("never", "never", None),
        ("after_days:30", "after_days:30", 30),
        ({"after_days": 7}, "after_days:7", 7),
    ],
)
def test_delete_modes_are_parsed_into_one_string(given: Any, mode: str, days: int | None) -> None:
    """after_store, never, after_days:N and {after_days: N} are the accepted delete modes."""
    acc = _settings(delete=given).accounts[0]
    assert (acc.delete, acc.delete_after_days) == (mode, days)


@pytest.mark.parametrize("given", ["after_days:0", "after_days:-1", "after_days", "sometimes", 5])
def test_bad_delete_modes_name_the_key_and_the_choices(given: Any) -> None:
    """Anything else is a config error naming accounts[0](support).delete and what is expected."""
    problem = _problems(delete=given)
    assert "accounts[0](support).delete: expected after_store, never, after_days:N" in problem


def test_account_options_override_only_the_keys_they_set() -> None:
    """storage holds the defaults; an account's storage_options replaces just its own keys."""
    s = _settings(
        {"sse": "kms", "kms_key_id": "alias/m", "object_lock": {"mode": "governance", "days": 3}},
        storage_options={"sse": "s3", "tags": True},
    )
    opts = s.options_for(s.accounts[0])
    assert (opts.sse, opts.kms_key_id, opts.tags) == ("s3", None, True)
    assert opts.object_lock is not None and opts.object_lock.days == 3


def test_option_mistakes_are_config_errors_with_their_key() -> None:
    """KMS without a key, a bad lock mode and options a directory store cannot honour."""
    assert "storage.kms_key_id: sse: kms needs the KMS key id" in _problems({"sse": "kms"})
    assert "object_lock.mode" in _problems({"object_lock": {"mode": "strict", "days": 1}})
    problem = _problems(
        {"url": "file:///srv/mail", "sse": "s3"}, storage_options={"legal_hold": True}
    )
    assert "storage.sse: needs an s3:// store" in problem
    assert "accounts(support).storage_options.legal_hold: needs an s3:// store" in problem


def _writer(**options: Any) -> ObjectWriter:
    return ObjectWriter("support", "pre/support", StorageOptions(**options), clock=lambda: 1e9)


RAW = (
    b"Message-ID: <a\xc3\xa9b\tx-amz-meta-evil: 1%@host>\r\n"
    b"Date: Wed, 13 Jan 2016 12:04:57 +0200\r\nSubject: x\r\n\r\nbody\r\n"
)


def test_lock_goes_on_raw_and_attachments_only_when_created() -> None:
    """Retention and legal hold go on new raw and att objects, never on JSON or a replace."""
    w = _writer(object_lock={"mode": "compliance", "days": 10}, legal_hold=True)
    body = Spool.of(RAW)
    raw = w.params("pre/support/raw/ab/x.eml", body, create=True)
    assert raw["ObjectLockMode"] == "COMPLIANCE" and raw["ObjectLockLegalHoldStatus"] == "ON"
    assert raw["ObjectLockRetainUntilDate"] == datetime.fromtimestamp(1e9 + 864000, UTC)
    assert "ObjectLockMode" in w.params("pre/support/att/ab/x", body, create=True)
    assert "ObjectLockMode" not in w.params("pre/support/json/ab/x.json", body, create=True)
    assert "ObjectLockMode" not in w.params("pre/support/raw/ab/x.eml", body, create=False)
    assert "ObjectLockMode" not in w.params("pre/_ingest/check.txt", body, create=True)


def test_hostile_message_ids_become_safe_metadata_and_tags() -> None:
    """CR, LF, non-ASCII and % in a Message-ID are encoded for headers and cut for tags."""
    facts = facts_for("raw", "support", Spool.of(RAW))
    params = put_params(
        StorageOptions(tags=True, sse="s3", storage_class="STANDARD_IA"), facts, create=True
    )
    meta = params["Metadata"]
    assert meta["message-id"] == "a%EF%BF%BD%EF%BF%BDb%09x-amz-meta-evil:%201%25@host"
    assert all(0x21 <= ord(c) < 0x7F for v in meta.values() for c in v)
    assert meta["date"] == "2016-01-13T10:04:57Z" and meta["account"] == "support"
    assert meta["kind"] == "raw" and meta["sha256"] == Spool.of(RAW).sha256
    tags = dict(parse_qsl(params["Tagging"]))
    assert tags["message-id"] == "a__b_x-amz-meta-evil: 1_@host"
    assert len(tags) <= 10 and all(len(v) <= 256 for v in tags.values())
    assert (params["ServerSideEncryption"], params["StorageClass"]) == ("AES256", "STANDARD_IA")


def test_limits_and_unparseable_dates() -> None:
    """Metadata is cut without splitting an escape, tags at 256, a bad Date gives nothing."""
    assert meta_value("<a\r\nX-Evil: 1\x00>") == "<a%0D%0AX-Evil:%201%00>"
    assert len(meta_value("é" * 500)) <= 900 and not meta_value("é" * 500).endswith("%")
    assert len(tag_value("x" * 1000)) == 256
    assert message_date(b"Date: yesterday-ish\r\n\r\n") == ""
    assert message_date(b"Subject: none\r\n\r\n") == ""
    assert put_params(StorageOptions(metadata=False), facts_for("json", "a", Spool.of(b"{}")),
                      create=True) == {"Metadata": {"sha256": Spool.of(b"{}").sha256}}  # fmt: skip

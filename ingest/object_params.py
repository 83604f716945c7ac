"""The S3 PUT parameters of one account's objects: metadata, tags, encryption, class, lock.

What each kind of object gets (kind = the key's part after the account):

- every object: ``StorageClass``, server-side encryption (SSE-S3 ``AES256`` or SSE-KMS
  with the key id), user metadata ``sha256`` (of the object's bytes) plus ``account`` and
  ``kind`` (``raw``, ``json``, ``att``), and the same as tags when ``tags`` is on;
- ``raw`` (the message) also ``message-id`` and ``date`` (its Date header in UTC);
- ``raw`` and ``att``, only when *created* (never by ``replace``): Object Lock retention
  (mode, retain-until = now + days) and legal hold. JSON documents are derived (``ingest
  reparse`` rewrites them), so they are never locked.

Metadata travels in HTTP headers, so values are printable ASCII only: anything else (CR,
LF, NUL, non-ASCII, ``%``) is percent-encoded, and a Message-ID is cut to 900 characters.
Tag values keep only the characters S3 allows in tags (letters, digits, space and
``+ - = . _ : / @``; others become ``_``), at most 256 characters, 5 tags of the 10 allowed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

from ingest.model import header_block, message_id_of
from ingest.spool import Spool
from ingest.storage_options import StorageOptions

LOCKED_KINDS = frozenset({"raw", "att"})
MAX_META_MESSAGE_ID = 900
MAX_TAG_VALUE = 256
_META_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")
_DATE = re.compile(rb"(?im)^date:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)")
_SSE = {"s3": "AES256", "kms": "aws:kms"}


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What an object's metadata and tags say about it."""

    account: str
    kind: str
    sha256: str
    message_id: str = ""
    date: str = ""


def meta_value(text: str, limit: int = MAX_META_MESSAGE_ID) -> str:
    """``text`` as printable ASCII for an HTTP header (percent-encoded), at most ``limit``."""
    encoded = quote(text, safe=_META_SAFE)[:limit]
    return re.sub(r"%[0-9A-F]?$", "", encoded)  # never end in a cut escape


def tag_value(text: str) -> str:
    """``text`` with only the characters S3 tags allow, at most 256 characters."""
    return _TAG_UNSAFE.sub("_", text)[:MAX_TAG_VALUE]


def message_date(head: bytes) -> str:
    """The Date header of a header block in UTC (``2016-01-13T10:04:57Z``), or ''."""
    match = _DATE.search(head)
    if not match:
        return ""
    value = re.sub(rb"\r\n[ \t]", b" ", match.group(1)).decode("ascii", "replace")
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def facts_for(kind: str, account: str, body: Spool) -> ObjectFacts:
    """The facts of one object; a raw message's Message-ID and Date come from its headers."""
    if kind != "raw":
        return ObjectFacts(account, kind, body.sha256)
    head = header_block(body.head())
    message_id = message_id_of(head).strip("<>")
    return ObjectFacts(account, kind, body.sha256, message_id, message_date(head))


def _pairs(facts: ObjectFacts) -> dict[str, str]:
    pairs = {"account": facts.account, "kind": facts.kind, "sha256": facts.sha256}
    pairs.update({"message-id": facts.message_id, "date": facts.date})
    return {k: v for k, v in pairs.items() if v}


def metadata(options: StorageOptions, facts: ObjectFacts) -> dict[str, str]:
    """User metadata (``x-amz-meta-*``): ``sha256`` always, the rest when ``metadata`` is on."""
    if not options.metadata:
        return {"sha256": facts.sha256}
    return {k: meta_value(v) for k, v in _pairs(facts).items()}


def tagging(facts: ObjectFacts) -> str:
    """The ``Tagging`` parameter: URL-encoded ``key=value&...``."""
    tags = {k: tag_value(v) for k, v in _pairs(facts).items()}
    return urlencode({k: v for k, v in tags.items() if v}, quote_via=quote)


def put_params(
    options: StorageOptions,
    facts: ObjectFacts,
    *,
    create: bool,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Extra ``put_object`` arguments for one object (``create``: a new object, not a
    replacement, so retention and legal hold apply to the locked kinds)."""
    params: dict[str, Any] = {"Metadata": metadata(options, facts)}
    if options.storage_class:
        params["StorageClass"] = options.storage_class
    if options.sse != "none":
        params["ServerSideEncryption"] = _SSE[options.sse]
    if options.sse == "kms":
        params["SSEKMSKeyId"] = options.kms_key_id
    if options.tags:
        params["Tagging"] = tagging(facts)
    if create and facts.kind in LOCKED_KINDS:
        params.update(lock_params(options, clock()))
    return params


def lock_params(options: StorageOptions, now: float) -> dict[str, Any]:
    """Object Lock retention (retain-until = ``now`` + days, whole seconds) and legal hold."""
    params: dict[str, Any] = {}
    if options.object_lock is not None:
        until = int(now) + options.object_lock.days * 86400
        params["ObjectLockMode"] = options.object_lock.mode.upper()
        params["ObjectLockRetainUntilDate"] = datetime.fromtimestamp(until, UTC)
    if options.legal_hold:
        params["ObjectLockLegalHoldStatus"] = "ON"
    return params


def protection(reply: dict[str, Any]) -> dict[str, str]:
    """What a PUT or HEAD reply says protects an object, as strings for the ledger."""
    names = {
        "version_id": "VersionId", "sse": "ServerSideEncryption", "kms_key_id": "SSEKMSKeyId",
        "storage_class": "StorageClass", "lock_mode": "ObjectLockMode",
        "legal_hold": "ObjectLockLegalHoldStatus", "retain_until": "ObjectLockRetainUntilDate",
    }  # fmt: skip
    fields = {name: reply.get(field) for name, field in names.items()}
    fields["retain_until"] = _iso(fields["retain_until"])
    return {k: str(v) for k, v in fields.items() if v}


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None


class ObjectWriter:
    """One account's options applied to its keys; remembers how each raw object is protected
    (from the PUT or, when it existed, the HEAD) for the ledger record."""

    def __init__(
        self, account: str, key_root: str, options: StorageOptions,
        clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.account = account
        self.root = key_root.strip("/") + "/" if key_root.strip("/") else ""
        self.options = options
        self.clock = clock
        self._notes: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def kind(self, key: str) -> str:
        """``raw``, ``json`` or ``att`` for the account's keys, ``other`` for the rest."""
        rest = key.removeprefix(self.root) if key.startswith(self.root) else ""
        kind = rest.split("/", 1)[0]
        return kind if kind in ("raw", "json", "att") else "other"

    def params(self, key: str, body: Spool, *, create: bool) -> dict[str, Any]:
        facts = facts_for(self.kind(key), self.account, body)
        return put_params(self.options, facts, create=create, clock=self.clock)

    def note(self, key: str, sent: dict[str, Any], reply: dict[str, Any]) -> None:
        if self.kind(key) == "raw":
            with self._lock:
                self._notes[key] = protection({**sent, **reply})

    def protection(self, key: str) -> dict[str, str]:
        with self._lock:
            return dict(self._notes.get(key, {}))

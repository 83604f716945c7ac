"""The ``message.stored`` event: a CloudEvents 1.0 JSON envelope around a message summary.

The id is stable (SHA-256 of account, UIDL and the message's sha256), so an event sent
again after a crash or a retry carries the id it had the first time and consumers can
drop repeats. The data is a summary of the stored JSON document plus the object keys;
never a body, a header dump or a secret.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ingest.model import StoredMessage

SPEC_VERSION = "1.0"
EVENT_TYPE = "org.ingest.message.stored"
MAX_ITEMS = 50  # addresses per field, attachments: the JSON document has them all
_COPIED = (
    "schema_version", "message_id", "in_reply_to", "date", "subject", "thread_subject",
    "ticket_ref", "classification", "parse_error",
)  # fmt: skip
_ADDRESSES = ("from", "sender", "reply_to", "to", "cc")
_ATTACHMENT_FIELDS = ("filename", "content_type", "sniffed_type", "size", "sha256", "key")


@dataclass(frozen=True, slots=True)
class Event:
    """One event, ready to send: its id, the account it belongs to and its JSON text."""

    id: str
    account: str
    body: str

    def envelope(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def event_id(account: str, uidl: str, sha256: str) -> str:
    """Stable id of the event for one stored message: the same after any replay."""
    return hashlib.sha256(f"{account}\n{uidl}\n{sha256}".encode()).hexdigest()


def summary(msg: StoredMessage) -> dict[str, Any]:
    """The event's data: keys, identity and the document's routing fields."""
    doc = msg.document
    data: dict[str, Any] = {
        "account": msg.account,
        "uidl": msg.uidl,
        "sha256": msg.sha256,
        "size": msg.size,
        "raw_key": msg.raw_key,
        "json_key": msg.json_key,
    }
    data.update({name: doc.get(name) for name in _COPIED})
    data.update({name: list(doc.get(name) or [])[:MAX_ITEMS] for name in _ADDRESSES})
    attachments = list(doc.get("attachments") or [])
    data["attachments"] = [
        {f: a.get(f) for f in _ATTACHMENT_FIELDS} for a in attachments[:MAX_ITEMS]
    ]
    data["attachment_count"] = len(attachments)
    data["defects"] = list(doc.get("defects") or [])[:MAX_ITEMS]
    return data


def message_stored(msg: StoredMessage, now: float) -> Event:
    """The CloudEvents 1.0 envelope (structured mode) of a newly stored message."""
    ident = event_id(msg.account, msg.uidl, msg.sha256)
    envelope = {
        "specversion": SPEC_VERSION,
        "id": ident,
        "source": f"ingest://{msg.account}",
        "type": EVENT_TYPE,
        "subject": msg.sha256,
        "time": dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": summary(msg),
    }
    body = json.dumps(envelope, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return Event(ident, msg.account, body)

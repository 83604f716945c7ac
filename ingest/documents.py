"""Build a message's JSON document from its raw bytes, storing its attachments first.

Used by the poll and by ``ingest reparse``, so a rebuilt document is exactly what a poll
would have written. Above ``parse_max_bytes`` only the header block is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest import keys
from ingest.interfaces import BlobStore
from ingest.model import header_block
from ingest.spool import Spool

if TYPE_CHECKING:
    from ingest.parse import Payload

Parser = Callable[..., dict[str, Any]]
TOO_LARGE = "body-not-parsed-too-large"


@dataclass(frozen=True, slots=True)
class DocumentSpec:
    """Where a document's parts go and how it is parsed."""

    account: str
    prefix: str = ""
    ticket_pattern: str | None = None
    parse_max_bytes: int = 25 * 1024 * 1024


def build_document(
    spec: DocumentSpec, raw: Spool, uidl: str, store: BlobStore, parse: Parser | None = None
) -> dict[str, Any]:
    """The JSON document of ``raw``; each attachment is stored under its content key first.

    ``parse`` defaults to :func:`ingest.parse.parse_message`, imported on first use: the
    parser's modules are a large share of start-up, which a poll that finds no new mail
    never needs."""
    if parse is None:
        from ingest.parse import parse_message  # noqa: PLC0415 - lazy, see above

        parse = parse_message
    raw_key = keys.raw_key(spec.prefix, spec.account, raw.sha256)
    whole = raw.size <= spec.parse_max_bytes
    data = raw.read() if whole else header_block(raw.head())
    payloads: list[Payload] = []
    doc = parse(
        data, account=spec.account, uidl=uidl, sha256=raw.sha256, raw_key=raw_key,
        prefix=spec.prefix, ticket_pattern=spec.ticket_pattern, payloads=payloads,
    )  # fmt: skip
    if not whole:
        doc["size"] = raw.size
        doc["defects"] = [*doc.get("defects", []), TOO_LARGE]
        return doc
    for sha256, content_type, payload in payloads:
        key = keys.attachment_key(spec.prefix, spec.account, sha256)
        store.put(key, Spool.of(payload, sha256), content_type or "application/octet-stream")
    return doc


def document_body(doc: dict[str, Any]) -> Spool:
    from ingest.parse import dump_document  # noqa: PLC0415 - lazy, see build_document

    return Spool.of(dump_document(doc))

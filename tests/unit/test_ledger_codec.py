"""The ledger's record encoding: one batch decode gives what decoding each record gives."""

from __future__ import annotations

from ingest.ledger import decode, decode_many, encode
from ingest.model import LedgerRecord, State

RECORDS = [
    LedgerRecord(State.STORED, "a" * 64, 10, "raw/k", "json/k", 1.5),
    LedgerRecord(State.DELETED, "b" * 64, 5, "r", "j", 2.0, gone_since=3.0),
    LedgerRecord(State.QUARANTINED, "", 7, "", "", 4.0, failures=3, reason='bad "quote" \u00e9'),
    LedgerRecord(
        State.STORED,
        "c" * 64,
        9,
        "r2",
        "j2",
        5.0,
        head_sha256="d" * 64,
        body_sha256="e" * 64,
        message_id="<x@y>",
    ),
]


def test_batch_decode_matches_single_decode_for_bytes_and_text() -> None:
    """decode_many of encoded records (bytes or str) equals decode of each, in order."""
    encoded = [encode(r) for r in RECORDS]
    assert decode_many([e.encode() for e in encoded]) == [decode(e) for e in encoded] == RECORDS
    assert decode_many(encoded) == RECORDS
    assert decode_many([]) == []

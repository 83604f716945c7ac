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


def test_batch_decode_keeps_every_float_and_falls_back_where_orjson_cannot_read() -> None:
    """The fast parser gives json's floats (timestamps round-trip exactly); a record it
    refuses (an integer beyond 64 bits) is read by the stdlib as before."""
    stamps = [1732740000.123456, 0.1 + 0.2, 1e-7, 1.7976931348623157e308]
    records = [LedgerRecord(State.STORED, "f" * 64, 1, "r", "j", t) for t in stamps]
    assert decode_many([encode(r).encode() for r in records]) == records
    huge = encode(RECORDS[0]).replace('"size":10', '"size":18446744073709551616')
    (record,) = decode_many([huge.encode()])
    assert record.size == 2**64

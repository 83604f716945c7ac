"""The spool's hashes are computed while writing, however the content arrives."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.spool import Spool

pieces = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"Subject: x", b"\r\n\r\n"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces.map(b"".join), max_size=12))
def test_hashes_match_the_content_for_any_chunking(chunks: list[bytes]) -> None:
    """sha256, md5 and the body hash (after the first CRLF CRLF) equal a one-shot computation."""
    raw = b"".join(chunks)
    spool = Spool(threshold=16)
    for chunk in chunks:
        spool.write(chunk)
    end = raw.find(b"\r\n\r\n")
    body = raw[end + 4 :] if end >= 0 else b""
    assert spool.sha256 == hashlib.sha256(raw).hexdigest()
    assert spool.md5 == hashlib.md5(raw, usedforsecurity=False).hexdigest()
    assert spool.body_sha256 == hashlib.sha256(body).hexdigest()
    assert spool.read() == raw and spool.size == len(raw)


@settings(max_examples=200, deadline=None)
@given(st.lists(pieces.map(b"".join), max_size=12).map(b"".join))
def test_a_spool_of_bytes_has_the_same_digests_and_content(raw: bytes) -> None:
    """``Spool.of`` (no temp file, body hash and MD5 on demand) agrees with a written spool."""
    written = Spool(threshold=16)
    written.write(raw)
    spool = Spool.of(raw)
    assert (spool.sha256, spool.md5, spool.body_sha256, spool.size) == (
        written.sha256,
        written.md5,
        written.body_sha256,
        written.size,
    )
    assert spool.read() == raw and spool.open().read() == raw and spool.head(5) == raw[:5]


def test_md5_is_of_everything_written_even_when_asked_in_between() -> None:
    spool = Spool(threshold=4)
    spool.write(b"Subject: a\r\n\r\n")
    first = spool.md5
    spool.write(b"body")
    assert first == hashlib.md5(b"Subject: a\r\n\r\n", usedforsecurity=False).hexdigest()
    assert spool.md5 == hashlib.md5(b"Subject: a\r\n\r\nbody", usedforsecurity=False).hexdigest()


def test_md5_and_head_leave_an_opened_body_where_it_was() -> None:
    """An upload opens the body and then asks for MD5 or the head (for the object's
    parameters): the body it sends is still whole (S3's replace once sent an empty body
    under a Content-Length, and waited a minute for its read timeout)."""
    raw = b"Subject: a\r\n\r\n" + b"x" * 100
    written = Spool(threshold=16)
    written.write(raw)
    for spool in (written, Spool.of(raw)):
        source = spool.open()
        assert spool.md5 == hashlib.md5(raw, usedforsecurity=False).hexdigest()
        assert spool.head(8) == raw[:8]
        assert source.read() == raw

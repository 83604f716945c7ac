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

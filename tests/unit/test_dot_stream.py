"""Streaming multi-line replies: dot-unstuffing and the terminator across arbitrary chunks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import pop3_wire
from ingest.pop3_wire import Endpoint, Pop3Wire


class ChunkedWire(Pop3Wire):
    """A wire whose socket delivers the given chunks, then nothing."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(Endpoint("h", 1, "plain"))
        self.chunks = list(chunks)

    def _recv(self) -> None:
        if not self.chunks:
            raise AssertionError("read past the end of the reply")
        self._buf += self.chunks.pop(0)


def stuff(message: bytes) -> bytes:
    """What a server sends for ``message`` (CRLF lines): dot-stuffed, then the terminator."""
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines) + b".\r\n"


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


line = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
lines = st.lists(st.one_of(line, st.sampled_from([b".", b"..", b".x", b"...", b""])), max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines, st.lists(st.integers(min_value=0, max_value=10_000), max_size=12), st.booleans())
def test_any_chunking_gives_back_the_exact_message(
    body_lines: list[bytes], cuts: list[int], tiny_flush: bool
) -> None:
    """However the reply is cut into reads, the message comes out byte for byte."""
    message = b"".join(ln + b"\r\n" for ln in body_lines)
    wire_bytes = stuff(message) + b"+OK next reply\r\n"
    wire = ChunkedWire(split(wire_bytes, cuts))
    old = pop3_wire.PARTIAL_FLUSH
    pop3_wire.PARTIAL_FLUSH = 3 if tiny_flush else old
    try:
        assert wire._read_multiline() == message
    finally:
        pop3_wire.PARTIAL_FLUSH = old
    assert wire._readline() == b"+OK next reply"


def test_a_huge_line_is_streamed_not_buffered_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 5 MB line is passed on in parts of about PARTIAL_FLUSH bytes."""
    monkeypatch.setattr(pop3_wire, "PARTIAL_FLUSH", 64 * 1024)
    payload = b"x" * 5_000_000 + b"\r\n"
    wire = ChunkedWire(split(stuff(payload), list(range(0, 5_000_003, 100_000))))
    parts: list[bytes] = []
    wire._read_multiline_into(parts.append)
    assert b"".join(parts) == payload
    assert max(len(p) for p in parts) < 300_000


def test_status_lines_with_bare_lf_are_accepted() -> None:
    """Some old servers end status lines with LF alone; the reply is read all the same."""
    wire = ChunkedWire([b"+OK ready\n+OK", b" two\r\n"])
    assert wire._readline() == b"+OK ready"
    assert wire._readline() == b"+OK two"

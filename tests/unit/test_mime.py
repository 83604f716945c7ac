"""The fast MIME splitter builds exactly the tree the stdlib feed parser builds."""

from __future__ import annotations

import email
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mail_samples import CORPUS_FILES, SMALL_CORPUS, crlf

from ingest import mime
from ingest.parse import _POLICY

EXTRA = Path(__file__).resolve().parents[1] / "corpus-extra"
EXTRA_FILES = sorted(EXTRA.rglob("*.eml"))


def tree(msg: Message) -> list[Any]:
    """Everything the parsers set on a message and its parts, as plain data."""
    payload = msg._payload
    return [
        type(msg).__name__,
        msg.get_unixfrom(),
        list(msg._headers),
        msg.preamble,
        msg.epilogue,
        [type(defect).__name__ for defect in msg.defects],
        msg.get_default_type(),
        getattr(msg, "cut", None),
        getattr(msg, "depth", None),
        [tree(part) for part in payload] if isinstance(payload, list) else payload,
    ]


def assert_same_tree(raw: bytes) -> None:
    expected = tree(email.message_from_bytes(raw, policy=_POLICY))
    assert tree(mime.parse_bytes(raw, _POLICY)) == expected


@pytest.mark.parametrize("path", CORPUS_FILES + EXTRA_FILES, ids=lambda path: path.name)
def test_corpus_trees_are_equal(path: Path) -> None:
    """Every corpus message, LF and CRLF, gives the feed parser's tree."""
    assert_same_tree(path.read_bytes())
    assert_same_tree(crlf(path.read_bytes()))


_ODD_CASES = {
    "continuation first": b" \nSubject: x\n\nbody\n",
    "no separator": b"Subject: x\nnot a header\nmore\n",
    "colon first": b":x\nSubject: y\n\nb",
    "misplaced from": b"Subject: x\nFrom nobody\nTo: a@b\n\nb",
    "from last": b"Subject: x\nFrom nobody\n\nb",
    "unix from": b"From someone Mon Jan  1 00:00:00 2024\nSubject: x\n\nb",
    "no boundary": b"Content-Type: multipart/mixed\n\nbody\n",
    "bad cte": b'Content-Type: multipart/mixed; boundary="b"\nContent-Transfer-Encoding: base64\n\n'
    b"--b\n\nx\n--b--\n",
    "start missing": b'Content-Type: multipart/mixed; boundary="b"\n\npre\n--b--\nafter\n',
    "close missing": b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\nx\n',
    "boundaries in a row": b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n--b\n--b--\nx\n',
    "empty epilogue": b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\nx\n--b--',
    "nested": b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: multipart/'
    b'alternative; boundary="c"\n\n--c\n\nx\n--b\n\ny\n--b--\n',
    "digest": b'Content-Type: multipart/digest; boundary="b"\n\n--b\n\nSubject: s\n\nx\n--b--\n',
    "rfc822": b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: message/'
    b"rfc822\n\nSubject: s\n\nx\n\n--b--\n",
    "delivery status": b"Content-Type: message/delivery-status\n\nA: 1\n\n\nB: 2\nC\n\n",
    "boundary prefix": b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n\n--bb\n'
    b"--b \n\ny\n--b--",
    "bare cr": b"Subject: x\r\rbody\r",
    "8-bit boundary": b'Content-Type: multipart/mixed; boundary="b\xc2\xb5"\n\n--b\xc2\xb5\n\nx\n',
    "empty": b"",
}


@pytest.mark.parametrize("raw", _ODD_CASES.values(), ids=_ODD_CASES.keys())
def test_unusual_structures_are_equal(raw: bytes) -> None:
    """Each defect path of the feed parser is reproduced (or handed to it), LF and CRLF."""
    assert_same_tree(raw)
    assert_same_tree(crlf(raw))


_PIECES = st.sampled_from(
    [
        b"\n", b"\r\n", b"--b\n", b"--b--\n", b"--c\n", b"--c--\n", b" \n", b"From x\n",
        b"Subject: s\n", b"X: y\n", b":z\n", b"text\n",
        b'Content-Type: multipart/mixed; boundary="b"\n',
        b'Content-Type: multipart/alternative; boundary="c"\n',
        b"Content-Type: message/rfc822\n", b"Content-Type: message/delivery-status\n",
        b'Content-Type: multipart/digest; boundary="c"\n', b"Content-Transfer-Encoding: base64\n",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PIECES, max_size=40), st.booleans())
def test_generated_structures_are_equal(pieces: list[bytes], as_crlf: bool) -> None:
    """Messages stitched from header, boundary and body lines give the feed parser's tree."""
    raw = b"".join(pieces)
    assert_same_tree(crlf(raw) if as_crlf else raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SMALL_CORPUS), st.integers(min_value=0), st.binary(max_size=6))
def test_damaged_corpus_messages_are_equal(path: Path, where: int, junk: bytes) -> None:
    """A corpus message with a few bytes inserted anywhere gives the feed parser's tree."""
    raw = path.read_bytes()
    at = where % (len(raw) + 1)
    assert_same_tree(raw[:at] + junk + raw[at:])

"""parse_message and dump_document: corpus, spot checks, hostile input, properties."""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ingest.bodies
import ingest.parse
from ingest.addresses import is_valid_address
from ingest.bodies import MAX_DEPTH, MAX_PARTS
from ingest.parse import (
    PARSER_VERSION,
    SCHEMA_VERSION,
    dump_document,
    parse_message,
)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
CORPUS_FILES = sorted(CORPUS.rglob("*.eml"))
SMALL_CORPUS = [path for path in CORPUS_FILES if path.stat().st_size <= 16_384]
KEYS = {
    "schema_version", "parser_version", "account", "uidl", "sha256", "raw_key", "size",
    "message_id", "in_reply_to", "references", "date", "date_raw", "subject", "from", "to",
    "cc", "reply_to", "text", "html", "attachments", "headers", "defects", "parse_error",
}  # fmt: skip
ATTACHMENT_KEYS = {"filename", "content_type", "size", "sha256", "disposition", "content_id"}
UNSAFE_HEADER_CHARS = ("\r", "\n", "\x00", "\u2028")


def parse(raw: bytes) -> dict[str, Any]:
    """Parse with fixed envelope values and the real hash of raw."""
    sha = hashlib.sha256(raw).hexdigest()
    return parse_message(raw, account="acct", uidl="UID-1", sha256=sha, raw_key="raw/key.eml")


def crlf(raw: bytes) -> bytes:
    """The same message with CRLF line ends, as POP3 delivers it."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def corpus(name: str) -> bytes:
    """The corpus message whose file name ends with name."""
    (path,) = [path for path in CORPUS_FILES if path.name.endswith(name)]
    return path.read_bytes()


def assert_sound(doc: dict[str, Any]) -> None:
    """The invariants every document keeps, whatever the input."""
    assert set(doc) == KEYS
    data = dump_document(doc)
    assert json.loads(data.decode("utf-8")) == doc
    assert all(set(item) == ATTACHMENT_KEYS for item in doc["attachments"])
    for field in ("from", "to", "cc", "reply_to"):
        assert all(is_valid_address(item["address"]) for item in doc[field])
    header_texts = [doc["subject"] or ""] + [value for _, value in doc["headers"]]
    header_texts += [
        item["name"] for field in ("from", "to", "cc", "reply_to") for item in doc[field]
    ]
    header_texts += [item["filename"] or "" for item in doc["attachments"]]
    assert not any(char in text for text in header_texts for char in UNSAFE_HEADER_CHARS)


def multipart(*parts: bytes, boundary: bytes = b"B") -> bytes:
    """A multipart/mixed message around the given parts (each: headers, blank line, body)."""
    body = b"".join(b"--" + boundary + b"\n" + part + b"\n" for part in parts)
    head = b'From: a@example.com\nContent-Type: multipart/mixed; boundary="' + boundary
    return head + b'"\n\n' + body + b"--" + boundary + b"--\n"


def test_corpus_is_present() -> None:
    """The shared corpus is where the tests expect it, so the corpus tests cannot pass vacuously."""
    assert len(CORPUS_FILES) >= 160


@pytest.mark.parametrize("line_ends", ["lf", "crlf"])
@pytest.mark.parametrize("path", CORPUS_FILES, ids=lambda path: path.name)
def test_every_corpus_message_parses_to_sound_json(path: Path, line_ends: str) -> None:
    """Each corpus message, LF or CRLF, yields a complete document that survives a JSON trip."""
    raw = path.read_bytes() if line_ends == "lf" else crlf(path.read_bytes())
    doc = parse(raw)
    assert_sound(doc)
    assert doc["parse_error"] is None
    assert doc["sha256"] == hashlib.sha256(raw).hexdigest()
    assert (doc["account"], doc["uidl"], doc["raw_key"]) == ("acct", "UID-1", "raw/key.eml")
    assert (doc["size"], doc["schema_version"], doc["parser_version"]) == (
        len(raw),
        SCHEMA_VERSION,
        PARSER_VERSION,
    )


def test_documents_are_deterministic() -> None:
    """Parsing the same bytes twice gives byte-identical JSON, for every corpus message."""
    for path in CORPUS_FILES:
        raw = path.read_bytes()
        assert dump_document(parse(raw)) == dump_document(parse(raw)), path.name


def test_line_ends_do_not_change_the_document() -> None:
    """LF and CRLF copies differ only in size and in the bytes of non-encoded attachments."""
    for path in CORPUS_FILES:
        lf_doc, crlf_doc = parse(path.read_bytes()), parse(crlf(path.read_bytes()))
        for doc in (lf_doc, crlf_doc):
            doc.pop("size"), doc.pop("sha256")
            doc["attachments"] = [(a["filename"], a["content_type"]) for a in doc["attachments"]]
        assert lf_doc == crlf_doc, path.name


def test_koi8r_subject_names_and_attachments() -> None:
    """RFC 2047 koi8-r subject and filenames decode; sizes are of the decoded bytes."""
    doc = parse(corpus("message_with_koi8r_filename_attachments.eml"))
    assert doc["subject"] == "Предложения от НИУ ВШЭ на 2016 год"
    assert doc["from"] == [
        {"name": "Савостенок Ольга Святославовна", "address": "osavostenok@hse.ru"}
    ]
    files = [(a["filename"], a["content_type"], a["size"]) for a in doc["attachments"]]
    assert files[:2] == [
        ("Пакет предложений HSE Career Fair 8 апреля 2016.pdf", "application/pdf", 545826),
        ("Ведомости.pdf", "application/pdf", 503828),
    ]
    assert doc["text"].startswith("Добрый день, уважаемые коллеги.")
    assert doc["html"].startswith("<html")


def test_attachment_hash_and_size_are_of_decoded_bytes() -> None:
    """The dingus fish GIF is reported with its decoded size and the hash of those bytes."""
    doc = parse(corpus("msg_07.txt.eml"))
    (fish,) = doc["attachments"]
    assert (fish["filename"], fish["content_type"], fish["size"]) == (
        "dingusfish.gif",
        "image/gif",
        3512,
    )
    assert fish["disposition"] == "attachment"
    assert len(fish["sha256"]) == 64
    assert doc["text"] == "Hi there,\n\nThis is the dingus fish.\n"
    assert doc["from"] == [{"name": "Barry", "address": "barry@digicool.com"}]
    assert doc["date"] == "2001-04-20T23:35:02Z"


def test_folded_rfc2047_filename_decodes_whole() -> None:
    """A filename of four folded encoded words inside a quoted parameter decodes as one name."""
    doc = parse(corpus("mail_test_11.eml"))
    (attachment,) = doc["attachments"]
    assert attachment["filename"].startswith("Prokuratura Rejonowa Warszawa-Śródmieście północ")
    assert attachment["filename"].endswith("dopuszczenia SOWP do udziału w postepowaniu.pdf")
    assert "header-crlf" not in doc["defects"]


def test_ids_dates_and_content_ids() -> None:
    """Message ids lose their brackets (as in JMAP), dates become UTC, cids lose brackets."""
    doc = parse(corpus("message_with_image_jpg_mimetype.eml"))
    assert doc["message_id"] == "510A5CC8.6E86.00A9.1@example.net"
    assert doc["in_reply_to"] == "1359492484.4590710694371947@mf102"
    assert doc["references"] == ["1359492484.4590710694371947@mf102"]
    assert (doc["date_raw"], doc["date"]) == (
        "Thu, 31 Jan 2013 12:00:08 -0600",
        "2013-01-31T18:00:08Z",
    )
    assert doc["attachments"][0]["content_id"] == "OEOYKEJENLIK.2.jpg"
    assert doc["html"] is not None


def test_address_as_display_name_reports_the_real_address() -> None:
    """``alice@example.com <bob@example.com>`` is bob, flagged; not dropped, not alice."""
    doc = parse(corpus("mail_test_19.eml"))
    assert doc["from"] == [{"name": "alice@example.com", "address": "bob@example.com"}]
    assert [item["address"] for item in doc["to"]] == ["charlie@example.com", "dave@example.com"]
    assert [item["address"] for item in doc["cc"]] == ["frank@example.com"]
    assert [item["address"] for item in doc["reply_to"]] == ["ivan@example.com"]
    assert "display-name-address" in doc["defects"]


def test_phishing_sender_and_lookalike_reply_to() -> None:
    """The phishing sample keeps its real sender and its look-alike Reply-To verbatim."""
    doc = parse(corpus("mail_test_15.eml"))
    assert [item["address"] for item in doc["from"]] == ["do-not-reply@ncs.gov.ng"]
    assert doc["reply_to"] == [{"name": "", "address": "purchasing@aquiIlaindustries.com"}]
    assert [a["filename"] for a in doc["attachments"]] == ["REQUEST FOR QUOTE.zip"]


def test_encoded_words_inside_a_quoted_name_are_accepted() -> None:
    """The quoted ``"=?utf-8?b?...?="`` name some mailers write decodes instead of being dropped."""
    doc = parse(corpus("_messages_enclosed.eml"))
    assert doc["to"] == [{"name": "Александр Клижентас☯", "address": "bob@example.com"}]


def test_gb2312_label_decodes_with_its_superset() -> None:
    """A gb2312-labelled subject using GBK characters decodes without replacement characters."""
    subject = parse(corpus("mail_test_9.eml"))["subject"]
    assert subject.startswith("我把镜头拉近些")
    assert "\ufffd" not in subject


def test_raw_8bit_header_falls_back_to_cp1252() -> None:
    """An unencoded byte 0x85 in a subject reads as cp1252's ellipsis, with a defect."""
    doc = parse(corpus("spam_broken-headers.eml"))
    assert doc["subject"] == "Forget Asking For A Link Exchange…"
    assert "header-not-utf8" in doc["defects"]


def test_delivery_status_is_one_attachment() -> None:
    """A bounce's message/delivery-status header blocks are one attachment, not empty text."""
    doc = parse(corpus("msg_16.txt.eml"))
    assert [a["content_type"] for a in doc["attachments"]] == ["message/delivery-status"]
    assert doc["text"].startswith("This report relates to a message you sent")


def test_text_of_an_attached_message_is_not_body_text() -> None:
    """Leaves inside a message/rfc822 with disposition attachment are attachments."""
    doc = parse(corpus("message_with_rfc822_attachment.eml"))
    assert doc["text"] == (
        "Dear Sir or Madam,\n\nI am sending you an email message as an attachment.\n\n"
    )
    assert [a["content_type"] for a in doc["attachments"]] == ["text/plain"]


def test_rfc822_leaves_are_walked() -> None:
    """Attachments inside a nested message/rfc822 are listed."""
    inner = multipart(
        b"Content-Type: text/plain\n\ninner text",
        b'Content-Type: image/png\nContent-Disposition: inline; filename="in.png"\n'
        b"Content-ID: <img1@x>\nContent-Transfer-Encoding: base64\n\naGVsbG8=",
        boundary=b"inner",
    )
    raw = multipart(
        b"Content-Type: text/plain\n\nouter", b"Content-Type: message/rfc822\n\n" + inner
    )
    doc = parse(raw)
    assert doc["text"] == "outer\ninner text"
    (image,) = doc["attachments"]
    assert (image["filename"], image["size"], image["disposition"], image["content_id"]) == (
        "in.png",
        5,
        "inline",
        "img1@x",
    )
    assert image["sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_body_and_attachment_classification() -> None:
    """First HTML is the body; later HTML, named text and unknown dispositions are attachments."""
    raw = multipart(
        b"Content-Type: text/plain; charset=utf-8\n\nplain one",
        b"Content-Type: text/html\n\n<p>first</p>",
        b"Content-Type: text/html\n\n<p>second</p>",
        b'Content-Type: text/plain; name="notes.txt"\n\nnamed',
        b"Content-Type: application/pdf\nContent-Disposition: form-data\n\n%PDF",
    )
    doc = parse(raw)
    assert (doc["text"], doc["html"]) == ("plain one", "<p>first</p>")
    kinds = [(a["content_type"], a["filename"], a["disposition"]) for a in doc["attachments"]]
    assert kinds == [
        ("text/html", None, None),
        ("text/plain", "notes.txt", None),
        ("application/pdf", None, "attachment"),
    ]
    assert "unknown-disposition" in doc["defects"]


def test_rfc2231_and_rfc2047_filenames() -> None:
    """RFC 2231 (with continuations) and RFC 2047 filenames decode."""
    raw = multipart(
        b"Content-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*=utf-8''caf%C3%A9.txt\n\nx",
        b"Content-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*0*=utf-8''part%20one;"
        b' filename*1=".txt"\n\nx',
        b"Content-Type: application/octet-stream\n"
        b'Content-Disposition: attachment; filename="=?utf-8?q?r=C3=A9sum=C3=A9.pdf?="\n\nx',
        b"Content-Type: application/octet-stream\n"
        b'Content-Disposition: attachment; filename="raw-\xc3\xa9.bin"\n\nx',
    )
    names = [a["filename"] for a in parse(raw)["attachments"]]
    assert names == ["café.txt", "part one.txt", "résumé.pdf", "raw-é.bin"]


def test_filename_loses_crlf_and_nul() -> None:
    """Encoded CR, LF and NUL in a filename become spaces, with a header-crlf defect."""
    raw = multipart(
        b"Content-Type: application/octet-stream\n"
        b"Content-Disposition: attachment; filename*=utf-8''evil%0D%0A%00.sh\n\nx"
    )
    doc = parse(raw)
    assert [a["filename"] for a in doc["attachments"]] == ["evil   .sh"]
    assert "header-crlf" in doc["defects"]


def test_encoded_crlf_in_subject_cannot_inject_headers() -> None:
    """CVE-2024-6923: an encoded CR/LF in the subject is replaced by spaces and flagged."""
    raw = b"From: a@example.com\nSubject: =?utf-8?q?hi=0D=0ABcc=3A_victim=40example=2Ecom?=\n\nx"
    doc = parse(raw)
    assert doc["subject"] == "hi  Bcc: victim@example.com"
    assert ["Subject", "hi  Bcc: victim@example.com"] in doc["headers"]
    assert "header-crlf" in doc["defects"]


def test_encoded_crlf_in_display_name_is_cleaned() -> None:
    """An encoded CR/LF in a display name cannot survive into the name (nor drop the address)."""
    raw = b"From: =?utf-8?q?Eve=0D=0AX-Evil=3A_1?= <eve@example.com>\n\nx"
    doc = parse(raw)
    assert doc["from"] == [{"name": "Eve  X-Evil: 1", "address": "eve@example.com"}]
    assert "header-crlf" in doc["defects"]


def test_other_line_breaks_and_nul_are_cleaned() -> None:
    """NUL, U+2028 and friends, raw or encoded, never reach a header value."""
    raw = b"Subject: a\x00b =?utf-8?q?c=E2=80=A8d=0Be?=\nX-Raw: p\x00q\n\nx"
    doc = parse(raw)
    assert doc["subject"] == "a b c d e"
    assert ["X-Raw", "p q"] in doc["headers"]


def test_gh_102988_from_header_yields_no_address() -> None:
    """CVE-2023-27043: ``alice@example.org)<bob@example.com>`` reports neither alice nor bob."""
    doc = parse(b"From: alice@example.org)<bob@example.com>\n\nx")
    assert doc["from"] == []
    assert "invalid-address" in doc["defects"]


def test_quoted_address_display_name_is_flagged() -> None:
    """``"alice@example.com" <bob@evil.example>`` is bob, with a display-name-address defect."""
    doc = parse(b'From: "alice@example.com" <bob@evil.example>\n\nx')
    assert doc["from"] == [{"name": "alice@example.com", "address": "bob@evil.example"}]
    assert "display-name-address" in doc["defects"]


def test_dates_convert_to_utc() -> None:
    """Offsets are applied, "-0000" is read as UTC, and junk gives null plus a defect."""
    assert parse(b"Date: Tue, 02 Jan 2024 05:04:05 +0200\n\n")["date"] == "2024-01-02T03:04:05Z"
    assert parse(b"Date: Tue, 02 Jan 2024 03:04:05 -0000\n\n")["date"] == "2024-01-02T03:04:05Z"
    doc = parse(b"Date: the day after tomorrow\n\n")
    assert (doc["date"], doc["date_raw"]) == (None, "the day after tomorrow")
    assert "invalid-date" in doc["defects"]
    assert parse(b"Date: Mon, 1 Jan 2024 00:00:00 +9999\n\n")["date"] is None


def test_bare_message_id_and_duplicates() -> None:
    """A bracketless Message-ID is kept with a defect; repeated singleton fields are flagged."""
    raw = b"Message-ID: abc@host\nFrom: a@example.com\nFrom: b@example.com\nSubject: 1\n\n"
    doc = parse(raw)
    assert doc["message_id"] == "abc@host"
    assert [item["address"] for item in doc["from"]] == ["a@example.com", "b@example.com"]
    assert {"invalid-message-id", "duplicate-from"} <= set(doc["defects"])


def test_missing_headers() -> None:
    """A message with no headers at all still has every key, and says what is missing."""
    doc = parse(b"\njust a body\n")
    assert_sound(doc)
    assert (doc["subject"], doc["date"], doc["from"], doc["text"]) == (
        None,
        None,
        [],
        "just a body\n",
    )
    assert {"missing-from", "missing-date"} <= set(doc["defects"])


def test_empty_input() -> None:
    """Zero bytes give a complete document, not an error."""
    doc = parse(b"")
    assert_sound(doc)
    assert (doc["size"], doc["parse_error"], doc["headers"]) == (0, None, [])


def test_binary_junk() -> None:
    """A megabyte of random bytes parses without an error and dumps to valid UTF-8 JSON."""
    doc = parse(random.Random(7).randbytes(1_000_000))
    assert_sound(doc)
    assert doc["parse_error"] is None


def test_eight_bit_garbage_headers() -> None:
    """Raw UTF-8 headers are read as such; other 8-bit bytes fall back to cp1252, flagged."""
    doc = parse(b"Subject: caf\xc3\xa9\nX-Junk: \xff\xfe\x80\x00\x9d\n\n")
    assert doc["subject"] == "café"
    assert doc["headers"][1][0] == "X-Junk"
    assert "header-not-utf8" in doc["defects"]
    assert_sound(doc)


def test_bogus_charsets_fall_back() -> None:
    """Unknown, non-text and lying charsets never raise; the text falls back and is flagged."""
    unknown = parse(b"Content-Type: text/plain; charset=x-bogus\n\ncaf\xc3\xa9")
    assert unknown["text"] == "café"
    assert "unknown-charset" in unknown["defects"]
    for charset in (b"base64", b"zlib", b"punycode", b"unicode-escape", b"idna"):
        doc = parse(b"Content-Type: text/plain; charset=" + charset + b"\n\n\\ud800 caf\xc3\xa9")
        assert doc["text"] == "\\ud800 café"
        assert "unknown-charset" in doc["defects"]
    lying = parse(b"Content-Type: text/plain; charset=us-ascii\n\ncaf\xc3\xa9 \xe9")
    assert lying["text"] == "caf\u00c3\u00a9 \u00e9"
    assert "charset-mismatch" in lying["defects"]
    header = parse(b"Subject: =?x-bogus?q?caf=C3=A9?= =?utf-8?b?QUJDR?=\n\n")
    assert header["subject"] == "café =?utf-8?b?QUJDR?="
    assert {"unknown-charset", "invalid-encoded-word"} <= set(header["defects"])


def test_deep_nesting_stops_at_the_limit() -> None:
    """1000 nested multiparts do not recurse the parser to death: descent stops, flagged."""
    levels = 1000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(levels)
    )
    tail = b"".join(b"--b%d--\n" % i for i in reversed(range(levels)))
    started = time.monotonic()
    doc = parse(b"From: a@example.com\n" + head + b"Content-Type: text/plain\n\ndeep\n" + tail)
    assert time.monotonic() - started < 10
    assert_sound(doc)
    assert doc["parse_error"] is None
    assert "mime-too-deep" in doc["defects"]


def test_deep_message_nesting_stops_at_the_limit() -> None:
    """1000 nested message/rfc822 parts are cut at the depth limit, flagged."""
    doc = parse(b"Content-Type: message/rfc822\n\n" * 1000 + b"\ndeep\n")
    assert doc["parse_error"] is None
    assert "mime-too-deep" in doc["defects"]


def test_nesting_within_the_limit_is_walked() -> None:
    """A part nested exactly MAX_DEPTH levels down is still read."""
    raw = b"Content-Type: message/rfc822\n\n" * MAX_DEPTH + b"\ndeep\n"
    doc = parse(raw)
    assert doc["text"] == "deep\n"
    assert "mime-too-deep" not in doc["defects"]


def test_part_count_is_capped() -> None:
    """Of 10,000 parts only MAX_PARTS are reported, with a too-many-parts defect."""
    parts = [b"Content-Type: application/octet-stream\n\nx%d" % i for i in range(10_000)]
    doc = parse(multipart(*parts))
    assert len(doc["attachments"]) == MAX_PARTS
    assert "too-many-parts" in doc["defects"]


def test_huge_address_header_is_bounded() -> None:
    """A megabyte To: header (quadratic for the stdlib parser) is handled in bounded time."""
    started = time.monotonic()
    for body in (b'"' * 1_000_000, b"a " * 500_000, b"a@b.example," * 100_000):
        doc = parse(b"To: " + body + b"\n\nx")
        assert doc["parse_error"] is None
    assert time.monotonic() - started < 20


def test_unexpected_failure_becomes_parse_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash in one step becomes parse_error, and the other steps still fill the document."""

    def explode(*_: object) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(ingest.bodies, "decode_bytes", explode)
    doc = parse(b"From: a@example.com\nSubject: kept\n\nbody text")
    assert doc["parse_error"] == "RuntimeError: boom"
    assert (doc["subject"], doc["from"][0]["address"]) == ("kept", "a@example.com")
    assert_sound(doc)


def test_parser_crash_still_gives_a_full_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the email parser itself raises, the document has every key and says why."""

    def explode(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr(ingest.parse, "message_from_bytes", explode)
    doc = parse(b"Subject: x\n\n")
    assert_sound(doc)
    assert doc["parse_error"] == "MemoryError: "


def test_dump_document_replaces_lone_surrogates() -> None:
    """A lone surrogate cannot make dump_document fail or emit invalid UTF-8."""
    data = dump_document({"b": "x\udce9y", "a": ["\ud800"], "\udcff": 1})
    assert data.decode("utf-8") == '{"a":["\ufffd"],"b":"x\ufffdy","\ufffd":1}'


def test_dump_document_is_canonical() -> None:
    """Keys are sorted and there is no whitespace, whatever the insertion order."""
    assert dump_document({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_property_arbitrary_bytes(raw: bytes) -> None:
    """Any bytes at all give a sound document and no unexpected exception."""
    doc = parse(raw)
    assert_sound(doc)
    assert doc["parse_error"] is None


_MUTATIONS = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=1),
        st.sampled_from(["insert", "delete", "replace"]),
        st.binary(min_size=1, max_size=8)
        | st.sampled_from([b"\r\n", b"\n--", b"=?", b"?=", b'"', b"<", b"@", b"\x00", b"\xff"]),
    ),
    min_size=1,
    max_size=8,
)


def mutate(raw: bytes, mutations: list[tuple[float, str, bytes]]) -> bytes:
    """Apply insertions, deletions and replacements at relative positions."""
    for where, kind, data in mutations:
        at = int(where * len(raw))
        cut = len(data) if kind != "insert" else 0
        raw = raw[:at] + (data if kind != "delete" else b"") + raw[at + cut :]
    return raw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SMALL_CORPUS), st.booleans(), _MUTATIONS)
def test_property_mutated_corpus(
    path: Path, use_crlf: bool, mutations: list[tuple[float, str, bytes]]
) -> None:
    """Corpus messages with random damage still give a sound document and no unexpected error."""
    raw = crlf(path.read_bytes()) if use_crlf else path.read_bytes()
    doc = parse(mutate(raw, mutations))
    assert_sound(doc)
    assert doc["parse_error"] is None

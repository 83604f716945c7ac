"""parse_message and dump_document: corpus, spot checks, hostile input, properties."""

from __future__ import annotations

import base64
import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mail_samples import (
    CORPUS_FILES,
    SMALL_CORPUS,
    assert_sound,
    corpus,
    crlf,
    multipart,
    parse,
)

import ingest.bodies
import ingest.parse
from ingest.bodies import MAX_DEPTH, MAX_PARTS
from ingest.parse import PARSER_VERSION, SCHEMA_VERSION, attachment_payloads, dump_document


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
    assert (doc["size"], doc["schema_version"], doc["parser_version"]) == (len(raw), 2, 3)
    assert (SCHEMA_VERSION, PARSER_VERSION) == (2, 3)


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
            for item in doc["attachments"]:  # text attachments carry their own line ends
                del item["sha256"], item["size"], item["key"]
                item["parent"] = item["parent"] is not None  # an embedded message's sha256
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
    top = [a["content_type"] for a in doc["attachments"] if a["parent"] is None]
    assert top == ["message/delivery-status", "message/rfc822"]
    assert doc["text"].startswith("This report relates to a message you sent")
    assert "Ian's" not in doc["text"]  # the bounced message is no part of the body


def test_text_of_an_attached_message_is_not_body_text() -> None:
    """An attached message/rfc822 is listed whole, and its leaves with it as parent."""
    doc = parse(corpus("message_with_rfc822_attachment.eml"))
    assert doc["text"] == (
        "Dear Sir or Madam,\n\nI am sending you an email message as an attachment.\n\n"
    )
    embedded, inner = doc["attachments"]
    assert (embedded["content_type"], embedded["parent"]) == ("message/rfc822", None)
    assert (inner["content_type"], inner["parent"]) == ("text/plain", embedded["sha256"])


def test_rfc822_leaves_are_walked() -> None:
    """An embedded message is listed as written; its parts too, its text is not our body."""
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
    assert doc["text"] == "outer"
    embedded, text, image = doc["attachments"]
    assert embedded["sha256"] == hashlib.sha256(inner).hexdigest()
    assert (embedded["content_type"], text["parent"], image["parent"]) == (
        "message/rfc822",
        embedded["sha256"],
        embedded["sha256"],
    )
    assert (image["filename"], image["size"], image["disposition"], image["content_id"]) == (
        "in.png",
        5,
        "inline",
        "img1@x",
    )
    assert image["sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_body_and_attachment_classification() -> None:
    """HTML bodies join; named text and unknown dispositions are attachments."""
    raw = multipart(
        b"Content-Type: text/plain; charset=utf-8\n\nplain one",
        b"Content-Type: text/html\n\n<p>first</p>",
        b"Content-Type: text/html\n\n<p>second</p>",
        b'Content-Type: text/plain; name="notes.txt"\n\nnamed',
        b"Content-Type: application/pdf\nContent-Disposition: form-data\n\n%PDF",
    )
    doc = parse(raw)
    assert (doc["text"], doc["html"]) == ("plain one", "<p>first</p>\n<p>second</p>")
    kinds = [(a["content_type"], a["filename"], a["disposition"]) for a in doc["attachments"]]
    assert kinds == [
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
    assert doc["headers"][1] == {
        "name": "Subject",
        "value": "hi  Bcc: victim@example.com",
        "raw": "=?utf-8?q?hi=0D=0ABcc=3A_victim=40example=2Ecom?=",
    }
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
    assert doc["headers"][1] == {"name": "X-Raw", "value": "p q", "raw": "p\\x00q"}


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
    assert doc["headers"][1]["name"] == "X-Junk"
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


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_deep_nesting_stops_at_the_limit() -> None:
    """1000 nested multiparts do not recurse the parser to death: descent stops, flagged."""
    levels = 1000
    head = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (i, i) for i in range(levels)
    )
    tail = b"".join(b"--b%d--\n" % i for i in reversed(range(levels)))
    doc = parse(b"From: a@example.com\n" + head + b"Content-Type: text/plain\n\ndeep\n" + tail)
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
    *embedded, deepest = doc["attachments"]
    assert [item["content_type"] for item in embedded] == ["message/rfc822"] * (MAX_DEPTH - 1)
    assert (deepest["content_type"], deepest["size"]) == ("text/plain", 5)
    assert "mime-too-deep" not in doc["defects"]


def test_part_count_is_capped() -> None:
    """Of 10,000 parts only MAX_PARTS are reported, with a too-many-parts defect."""
    parts = [b"Content-Type: application/octet-stream\n\nx%d" % i for i in range(10_000)]
    doc = parse(multipart(*parts))
    assert len(doc["attachments"]) == MAX_PARTS
    assert "too-many-parts" in doc["defects"]


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_huge_address_header_is_bounded() -> None:
    """A megabyte To: header (quadratic for the stdlib parser) is handled in bounded time."""
    for body in (b'"' * 1_000_000, b"a " * 500_000, b"a@b.example," * 100_000):
        doc = parse(b"To: " + body + b"\n\nx")
        assert doc["parse_error"] is None


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

    monkeypatch.setattr(ingest.parse, "parse_bytes", explode)
    doc = parse(b"Subject: x\n\n")
    assert_sound(doc)
    assert doc["parse_error"] == "MemoryError: "


def test_dump_document_replaces_lone_surrogates() -> None:
    """A lone surrogate cannot make dump_document fail or emit invalid UTF-8."""
    data = dump_document({"b": "x\udce9y", "a": ["\ud800"], "\udcff": 1})
    assert data.decode("utf-8") == '{"a":["\ufffd"],"b":"x\ufffdy","\ufffd":1}'


def _stdlib_dump(doc: object) -> bytes:
    return ingest.parse._dumps(doc).encode("utf-8")  # type: ignore[arg-type]


def test_orjson_writes_the_stdlib_bytes_for_every_corpus_document() -> None:
    """The fast route writes exactly what ``json.dumps`` (sorted keys, no spaces, UTF-8)
    wrote before: documents stored by earlier versions compare equal byte for byte."""
    for path in CORPUS_FILES:
        for raw in (path.read_bytes(), crlf(path.read_bytes())):
            doc = parse(raw)
            fast = ingest.parse._orjson_dumps(doc)
            assert fast is not None, path.name
            assert fast == _stdlib_dump(doc), path.name


_JSON_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | _JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_JSON_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_JSON_TEXT, _JSON_VALUES, max_size=6))
def test_property_orjson_writes_the_stdlib_bytes(doc: dict[str, object]) -> None:
    """Any document-shaped value (strings with control characters and astral code points,
    64-bit integers, nesting) is written identically by both routes."""
    assert dump_document(doc) == _stdlib_dump(doc)


def test_what_orjson_refuses_goes_the_stdlib_route() -> None:
    """A lone surrogate, an integer beyond 64 bits and a non-str key are written as before."""
    for doc in ({"a": "x\udce9"}, {"a": 2**64}, {"a": {1: "x"}}):
        assert ingest.parse._orjson_dumps(doc) is None  # type: ignore[arg-type]
    assert dump_document({"a": 2**64, "b": {1: "x"}}) == b'{"a":18446744073709551616,"b":{"1":"x"}}'


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


def test_every_address_field() -> None:
    """From, Sender, Reply-To, To, Cc, Bcc, Delivered-To and Return-Path, each as a list."""
    raw = (
        b"From: Alice <alice@example.com>\nSender: Bot <bot@example.com>\n"
        b"Reply-To: help@example.com\nTo: Bob <bob@example.com>, carol@example.com\n"
        b"Cc: dave@example.com\nBcc: eve@example.com\nDelivered-To: inbox@example.net\n"
        b"Delivered-To: alias@example.net\nReturn-Path: <bounces@example.com>\n\nx"
    )
    doc = parse(raw)
    assert_sound(doc)
    addresses = {
        field: [item["address"] for item in doc[field]]
        for field in ("from", "sender", "reply_to", "to", "cc", "bcc", "delivered_to")
    }
    assert addresses == {
        "from": ["alice@example.com"],
        "sender": ["bot@example.com"],
        "reply_to": ["help@example.com"],
        "to": ["bob@example.com", "carol@example.com"],
        "cc": ["dave@example.com"],
        "bcc": ["eve@example.com"],
        "delivered_to": ["inbox@example.net", "alias@example.net"],
    }
    assert doc["return_path"] == [{"name": "", "address": "bounces@example.com"}]


def test_null_return_path_is_empty_not_invalid() -> None:
    """A bounce's ``Return-Path: <>`` gives no address and no invalid-address defect."""
    doc = parse(b"Return-Path: <>\nFrom: a@example.com\n\nx")
    assert doc["return_path"] == []
    assert "invalid-address" not in doc["defects"]


def test_idn_and_utf8_addresses_give_valid_json() -> None:
    """RFC 6532 UTF-8 addresses, IDN (punycode) domains and 8-bit junk are valid JSON."""
    raw = (
        "From: =?utf-8?q?J=C3=B6rg?= <jörg@bücher.example>\n"
        "To: 用户@例子.广告, info@xn--bcher-kva.example\n"
        'Cc: "Zoë" <zoë@exämple.de>\n\nx'
    ).encode() + b"\nBcc: caf\xe9@example.com\n"
    doc = parse(raw)
    assert_sound(doc)
    assert doc["from"] == [{"name": "Jörg", "address": "jörg@bücher.example"}]
    assert [item["address"] for item in doc["to"]] == [
        "用户@例子.广告",
        "info@xn--bcher-kva.example",
    ]
    assert doc["cc"] == [{"name": "Zoë", "address": "zoë@exämple.de"}]
    cp1252 = parse(b"From: caf\xe9@example.com\n\nx")
    assert cp1252["from"] == [{"name": "", "address": "café@example.com"}]
    assert "header-not-utf8" in cp1252["defects"]
    assert_sound(cp1252)


def test_headers_keep_raw_only_when_decoding_changed_something() -> None:
    """Plain and folded fields have raw null; encoded words and 8-bit bytes keep the raw value."""
    raw = (
        b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\nX-Folded: one\n two\n"
        b"X-Latin: caf\xe9\nX-Utf8: caf\xc3\xa9\n\nx"
    )
    assert parse(raw)["headers"] == [
        {"name": "Subject", "value": "Grüße", "raw": "=?utf-8?q?Gr=C3=BC=C3=9Fe?="},
        {"name": "X-Folded", "value": "one two", "raw": None},
        {"name": "X-Latin", "value": "café", "raw": "caf\\xe9"},
        {"name": "X-Utf8", "value": "café", "raw": None},
    ]


def test_header_order_and_duplicates_are_kept() -> None:
    """Headers come in message order, repeats included."""
    doc = parse(corpus("iphone.eml"))
    names = [item["name"] for item in doc["headers"]]
    assert names[:3] == ["Delivered-To", "Received", "Received"]
    assert names.count("Received") >= 2


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_limits_together_stay_fast() -> None:
    """Deep nesting, many parts and a large HTML-only body at once: bounded time, no error."""
    deep = b"Content-Type: message/rfc822\n\n" * 500
    parts = [b"Content-Type: text/html\n\n" + b"<!--<a " * 20_000, deep + b"\ndeep\n"]
    parts += [b"Content-Type: image/png\n\n%d" % i for i in range(3000)]
    doc = parse(multipart(*parts))
    assert doc["parse_error"] is None
    assert {"mime-too-deep", "too-many-parts"} <= set(doc["defects"])
    assert_sound(doc)


_LEAF_TYPES = [
    b"text/plain", b"text/html", b"text/calendar", b"application/pdf", b"image/png",
    b"application/ms-tnef", b"message/delivery-status", b"application/octet-stream",
]  # fmt: skip
_NAMES = st.sampled_from(
    [b"", b"; name=\"a.txt\"", b"; name=\"../../CON.txt\"", b"; name*=utf-8''%E2%80%AEexe.pdf",
     b"; name=\"=?utf-8?q?r=C3=A9sum=C3=A9.pdf?=\"", b'; name=".hidden"']
)  # fmt: skip


@st.composite
def _leaf(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(_LEAF_TYPES))
    head = b"Content-Type: " + kind + draw(_NAMES) + b"\n"
    head += draw(st.sampled_from([b"", b"Content-Disposition: attachment\n", b"Content-ID: <x>\n"]))
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        return head + b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(body)
    return head + b"\n" + body.replace(b"\n--", b"\n -")


def _container(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    def build(kind: bytes, parts: list[bytes], boundary: int) -> bytes:
        mark = b"b%d" % boundary
        inner = b"".join(b"--" + mark + b"\n" + part + b"\n" for part in parts)
        head = b"Content-Type: multipart/" + kind + b'; boundary="' + mark + b'"\n\n'
        return head + inner + b"--" + mark + b"--\n"

    multi = st.builds(
        build,
        st.sampled_from([b"mixed", b"alternative", b"related", b"report"]),
        st.lists(children, min_size=1, max_size=4),
        st.integers(0, 10**6),
    )
    return multi | children.map(lambda part: b"Content-Type: message/rfc822\n\n" + part)


_MIME_TREES = st.recursive(_leaf(), _container, max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MIME_TREES, st.booleans())
def test_property_generated_mime_trees(tree: bytes, use_crlf: bool) -> None:
    """Generated MIME trees give sound, schema-valid documents whose payloads match."""
    raw = b"From: a@example.com\nSubject: Re: tree\n" + tree
    raw = crlf(raw) if use_crlf else raw
    doc = parse(raw)
    assert_sound(doc)
    assert doc["parse_error"] is None
    listed = {item["sha256"] for item in doc["attachments"]}
    assert {sha for sha, _, _ in attachment_payloads(raw)} == listed
    assert all(item["filename_safe"] for item in doc["attachments"])


def test_nul_in_rfc2231_parameters_is_a_defect() -> None:
    """A NUL inside an RFC 2231 charset or report-type (the stdlib raises) is only a defect."""
    charset = parse(b"Content-Type: text/plain; charset*=ansi-x3.4-\x001968''us-ascii\n\nx")
    assert (charset["parse_error"], charset["text"]) == (None, "x")
    assert "unknown-charset" in charset["defects"]
    report = parse(
        b"Content-Type: multipart/report; report-type*=a\x00b''delivery-status; boundary=b\n\n"
        b"--b\nContent-Type: message/delivery-status\n\nAction: failed\n\n--b--\n"
    )
    assert report["parse_error"] is None
    assert_sound(report)

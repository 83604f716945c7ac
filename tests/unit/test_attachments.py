"""Attachments: safe filenames, sniffed types, TNEF, invitations, stored objects and payloads."""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mail_samples import CORPUS_FILES, assert_sound, corpus, crlf, multipart, parse

import ingest.bodies
from ingest.filenames import MAX_FILENAME_BYTES, safe_filename
from ingest.mime import parse_bytes
from ingest.parse import _POLICY, attachment_payloads
from ingest.sniff import sniff
from ingest.tnef import unpack

# --- safe filenames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("C:\\Users\\x\\evil.exe", "C__Users_x_evil.exe"),
        (".htaccess", "htaccess"),
        ("...", "attachment.bin"),
        ("", "attachment.bin"),
        (None, "attachment.bin"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("com1.tar.gz", "_com1.tar.gz"),
        ("console.log", "console.log"),
        ("a\x00b\r\nc.txt", "a_b__c.txt"),
        ("invoice\u202egpj.exe", "invoice_gpj.exe"),
        ('what?*:"<>|.txt', "what_______.txt"),
        ("  spaced   out  .doc. ", "spaced out .doc"),
        ("cafe\u0301.txt", "café.txt"),
        ("Ведомости.pdf", "Ведомости.pdf"),
    ],
)
def test_safe_filename_examples(name: str | None, expected: str) -> None:
    """Separators, controls, reserved device names and hidden-file dots never survive."""
    assert safe_filename(name) == expected


def test_safe_filename_without_name_uses_the_type() -> None:
    """A nameless part gets "attachment" and an extension for its declared type."""
    assert safe_filename(None, "image/png") == "attachment.png"
    assert safe_filename("", "text/calendar") == "attachment.ics"


def test_safe_filename_keeps_the_extension_when_shortened() -> None:
    """A name over the byte limit is cut inside the stem, on a character boundary."""
    name = "ж" * 300 + ".pdf"
    safe = safe_filename(name)
    assert safe.endswith("жж.pdf")
    assert len(safe.encode("utf-8")) <= MAX_FILENAME_BYTES


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=400)), st.sampled_from(["text/plain", "x/y"]))
def test_property_safe_filename(name: str | None, content_type: str) -> None:
    """Whatever the name: never empty, no / \\ NUL, no leading dot, at most 255 UTF-8 bytes."""
    safe = safe_filename(name, content_type)
    assert safe
    assert not any(char in safe for char in "/\\\x00")
    assert not safe.startswith(".")
    assert len(safe.encode("utf-8")) <= 255
    assert safe == safe_filename(safe, content_type)  # already safe: unchanged


# --- sniffing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"%PDF-1.7\n", "application/pdf"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"PK\x03\x04" + b"\x00" * 26 + b"[Content_Types].xml word/document.xml", (
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        )),
        (b"PK\x03\x04" + b"\x00" * 26 + b"mimetypeapplication/vnd.oasis.opendocument.text", (
            "application/vnd.oasis.opendocument.text"
        )),
        (b"PK\x03\x04\x14\x00", "application/zip"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "application/x-ole-storage"),
        (b"MZ" + b"\x00" * 58 + b"\x40\x00\x00\x00" + b"PE\x00\x00", (
            "application/vnd.microsoft.portable-executable"
        )),
        (b"\x78\x9f\x3e\x22\x00\x00", "application/ms-tnef"),
        (b"\xef\xbb\xbf  <!DOCTYPE html><p>x", "text/html"),
        (b"BEGIN:VCALENDAR\r\nVERSION:2.0", "text/calendar"),
        ("Grüße\n".encode(), "text/plain"),
        (b"\x00\x01\x02\x03binary", None),
        (b"", None),
    ],
)  # fmt: skip
def test_sniff(data: bytes, expected: str | None) -> None:
    """Magic numbers name the real type; unknown binary is None."""
    assert sniff(data) == expected


def test_sniff_reports_a_disguised_executable() -> None:
    """A Windows executable declared as a PDF is reported by what it is."""
    exe = b"MZ" + b"\x00" * 58 + b"\x40\x00\x00\x00" + b"PE\x00\x00" + b"\x00" * 100
    raw = multipart(
        b'Content-Type: application/pdf; name="invoice.pdf"\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.b64encode(exe)
    )
    (item,) = parse(raw)["attachments"]
    assert (item["content_type"], item["sniffed_type"]) == (
        "application/pdf",
        "application/vnd.microsoft.portable-executable",
    )


# --- TNEF ----------------------------------------------------------------------------------
# The builder follows [MS-OXTNEF]; its output was checked against the tnefparse library.


def tnef_attribute(level: int, ident: int, kind: int, value: bytes) -> bytes:
    checksum = sum(value) & 0xFFFF
    return (
        struct.pack("<BHHI", level, ident, kind, len(value)) + value + struct.pack("<H", checksum)
    )


def mapi_string(ident: int, text: str) -> bytes:
    data = text.encode("utf-16-le") + b"\x00\x00"
    return struct.pack("<HHII", 0x001F, ident, 1, len(data)) + data + b"\x00" * (-len(data) % 4)


def mapi_binary(ident: int, kind: int, data: bytes) -> bytes:
    return struct.pack("<HHII", kind, ident, 1, len(data)) + data + b"\x00" * (-len(data) % 4)


def tnef(files: list[tuple[str, bytes, str | None]], *, embedded: bytes = b"") -> bytes:
    """A TNEF stream carrying files (name, bytes, MIME tag) and optionally an embedded one."""
    out = struct.pack("<IH", 0x223E9F78, 1)
    out += tnef_attribute(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))
    out += tnef_attribute(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))
    for name, data, mime in files:
        out += tnef_attribute(2, 0x9002, 0x0006, b"\x01\x00\xff\xff\xff\xff" + b"\x00" * 8)
        out += tnef_attribute(2, 0x8010, 0x0001, name[:8].encode("ascii", "replace") + b"\x00")
        out += tnef_attribute(2, 0x800F, 0x0006, data)
        props = [struct.pack("<HHI", 0x0003, 0x3705, 1), mapi_string(0x3707, name)]
        props += [mapi_binary(0x370E, 0x001E, mime.encode() + b"\x00")] if mime else []
        out += tnef_attribute(2, 0x9005, 0x0006, struct.pack("<I", len(props)) + b"".join(props))
    if embedded:
        iid = bytes.fromhex("0703020000000000c000000000000046")
        out += tnef_attribute(2, 0x9002, 0x0006, b"\x05\x00" + b"\x00" * 12)
        props = [mapi_string(0x3001, "Forwarded"), mapi_binary(0x3701, 0x000D, iid + embedded)]
        out += tnef_attribute(2, 0x9005, 0x0006, struct.pack("<I", len(props)) + b"".join(props))
    return out


WINMAIL = tnef(
    [("Résumé 2024.docx", b"PK\x03\x04docx", "application/x-test"), ("b.txt", b"hi", None)]
)


def winmail_message(data: bytes = WINMAIL, content_type: bytes = b"application/ms-tnef") -> bytes:
    return multipart(
        b"Content-Type: text/plain\n\nsee attached",
        b"Content-Type: " + content_type + b'; name="winmail.dat"\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(data),
    )


def test_tnef_unpack_reads_names_types_and_bytes() -> None:
    """Long (Unicode) names win over 8.3 titles; MIME tags and bytes come through."""
    defects: set[str] = set()
    files = [(f.filename, f.content_type, f.data) for f in unpack(WINMAIL, defects)]
    assert files == [
        ("Résumé 2024.docx", "application/x-test", b"PK\x03\x04docx"),
        ("b.txt", None, b"hi"),
    ]
    assert defects == set()


def test_winmail_dat_is_listed_with_its_files() -> None:
    """The TNEF part is listed, then each inner file with parent = the TNEF's sha256."""
    doc = parse(winmail_message())
    assert_sound(doc)
    winmail, docx, text = doc["attachments"]
    assert (winmail["filename"], winmail["parent"]) == ("winmail.dat", None)
    assert winmail["sniffed_type"] == "application/ms-tnef"
    assert (docx["filename"], docx["content_type"], docx["parent"]) == (
        "Résumé 2024.docx",
        "application/x-test",
        winmail["sha256"],
    )
    assert docx["sha256"] == hashlib.sha256(b"PK\x03\x04docx").hexdigest()
    assert (text["filename"], text["content_type"], text["size"]) == (
        "b.txt",
        "application/octet-stream",
        2,
    )


def test_embedded_tnef_message_is_unpacked_in_turn() -> None:
    """An embedded message (an IMessage object) is listed and its files follow it."""
    inner = tnef([("deep.txt", b"deep", "text/plain")])
    doc = parse(winmail_message(tnef([("a.txt", b"a", None)], embedded=inner)))
    names = [(a["filename"], a["content_type"]) for a in doc["attachments"]]
    assert names == [
        ("winmail.dat", "application/ms-tnef"),
        ("a.txt", "application/octet-stream"),
        ("Forwarded", "application/ms-tnef"),
        ("deep.txt", "text/plain"),
    ]
    assert doc["attachments"][3]["parent"] == doc["attachments"][2]["sha256"]


def test_tnef_found_by_signature_and_mislabels_flagged() -> None:
    """A winmail.dat sent as octet-stream is unpacked; a fake ms-tnef part is a defect."""
    found = parse(winmail_message(content_type=b"application/octet-stream"))
    assert len(found["attachments"]) == 3
    fake = parse(winmail_message(b"not tnef at all"))
    assert len(fake["attachments"]) == 1
    assert "invalid-tnef" in fake["defects"]


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_hostile_tnef_is_fast_and_never_raises() -> None:
    """Huge counts, truncation and junk after the signature end quickly with defects."""
    head = struct.pack("<IH", 0x223E9F78, 1)
    count_bomb = tnef_attribute(2, 0x9005, 0x0006, struct.pack("<I", 0xFFFFFFFF) + b"\x00" * 64)
    mv_bomb = struct.pack("<IHHI", 1, 0x1001, 0x0001, 0xFFFFFFFF)  # multi-valued PtypNull
    many = tnef([(f"{i}.txt", b"x", None) for i in range(600)])
    for data in (
        head + count_bomb,
        head + tnef_attribute(2, 0x9005, 0x0006, mv_bomb),
        head + b"\x02\x0f\x80\x06\x00\xff\xff\xff\x7f",  # claims 2 GB
        WINMAIL[:-40],
        many,
        head + bytes(range(256)) * 400,
    ):
        defects: set[str] = set()
        files = unpack(data, defects)
        assert len(files) <= 500
    truncated: set[str] = set()
    assert len(unpack(WINMAIL[: WINMAIL.index(b"b.txt\x00")], truncated)) == 1
    assert "truncated-tnef" in truncated


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_property_tnef_junk(junk: bytes) -> None:
    """Any bytes after a TNEF signature give files or defects, never an exception."""
    unpack(struct.pack("<IH", 0x223E9F78, 1) + junk, set())
    unpack(WINMAIL[: len(junk) % len(WINMAIL)] + junk, set())


# --- calendars -----------------------------------------------------------------------------

INVITE = b"""BEGIN:VCALENDAR\r
METHOD:REQUEST\r
PRODID:Microsoft Exchange Server 2010\r
VERSION:2.0\r
BEGIN:VTIMEZONE\r
TZID:W. Europe Standard Time\r
BEGIN:STANDARD\r
DTSTART:16010101T030000\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10\r
END:STANDARD\r
BEGIN:DAYLIGHT\r
DTSTART:16010101T020000\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3\r
END:DAYLIGHT\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
ORGANIZER;CN="M\xc3\xbcller, Anna":mailto:anna@example.com\r
SUMMARY;LANGUAGE=de-DE:Quartalsplanung\\, Q3\r
DTSTART;TZID=W. Europe Standard Time:20240715T100000\r
DTEND;TZID=W. Europe Standard Time:20240715T113000\r
LOCATION:Raum 4.01\r
END:VEVENT\r
END:VCALENDAR\r
"""


def invite_message(calendar: bytes) -> bytes:
    alternative = (
        b'Content-Type: multipart/alternative; boundary="alt"\n\n--alt\n'
        b"Content-Type: text/plain\n\nPlease join.\n--alt\n"
        b'Content-Type: text/calendar; charset="utf-8"; method=REQUEST\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(calendar) + b"--alt--\n"
    )
    return multipart(alternative)


def test_invitation_is_summarised_in_utc() -> None:
    """An Outlook invite: method, organiser, start/end converted to UTC, summary, location."""
    doc = parse(invite_message(INVITE))
    assert_sound(doc)
    (item,) = doc["attachments"]
    assert item["content_type"] == "text/calendar"
    assert item["filename_safe"] == "attachment.ics"
    summary = {key: value for key, value in item["calendar"].items() if key != "events"}
    assert summary == {
        "event_count": 1,
        "method": "REQUEST",
        "organizer": {"name": "Müller, Anna", "address": "anna@example.com"},
        "start": "2024-07-15T08:00:00Z",
        "end": "2024-07-15T09:30:00Z",
        "summary": "Quartalsplanung, Q3",
        "location": "Raum 4.01",
    }
    assert doc["text"] == "Please join."


def test_all_day_floating_and_duration_events() -> None:
    """Dates stay dates, floating times stay local, a DURATION gives the end."""
    all_day = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20240101\r\nEND:VEVENT\r\n"
    floating = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:20240101T090000\r\nDURATION:PT1H\r\n"
    end = b"END:VEVENT\r\nEND:VCALENDAR\r\n"
    first = parse(invite_message(all_day + b"END:VCALENDAR\r\n"))["attachments"][0]["calendar"]
    assert (first["start"], first["end"], first["method"]) == ("2024-01-01", None, None)
    second = parse(invite_message(floating + end))["attachments"][0]["calendar"]
    assert (second["start"], second["end"]) == ("2024-01-01T09:00:00", "2024-01-01T10:00:00")


def test_broken_calendar_is_a_defect() -> None:
    """An unreadable calendar gives calendar null and a defect, not an error."""
    doc = parse(invite_message(b"BEGIN:VCALENDAR\r\ngarbage\r\n"))
    assert doc["attachments"][0]["calendar"] is None
    assert "invalid-calendar" in doc["defects"]
    assert doc["parse_error"] is None


# --- object keys and payloads --------------------------------------------------------------


def test_attachment_key_uses_prefix_and_account() -> None:
    """Each attachment points at its content-addressed object under the account."""
    doc = parse(corpus("msg_07.txt.eml"), prefix="/mail/")
    (fish,) = doc["attachments"]
    sha = fish["sha256"]
    assert fish["key"] == f"mail/acct/att/{sha[:2]}/{sha}"
    assert fish["filename_safe"] == "dingusfish.gif"
    assert fish["sniffed_type"] == "image/gif"


def test_payloads_match_the_document_for_every_corpus_message() -> None:
    """attachment_payloads yields exactly the listed attachments, once per sha256 (with the
    content type of its first listing)."""
    for path in CORPUS_FILES:
        raw = crlf(path.read_bytes())
        first: dict[str, str] = {}
        for item in parse(raw)["attachments"]:
            first.setdefault(item["sha256"], item["content_type"])
        payloads = list(attachment_payloads(raw))
        assert [(sha, kind) for sha, kind, _ in payloads] == list(first.items()), path.name
        assert all(hashlib.sha256(data).hexdigest() == sha for sha, _, data in payloads)


def test_payloads_deduplicate_and_include_tnef_files() -> None:
    """The same logo twice is stored once; files inside winmail.dat are stored too."""
    logo = b'Content-Type: image/png; name="logo.png"\nContent-Transfer-Encoding: base64\n\n'
    logo += base64.b64encode(b"\x89PNG\r\n\x1a\nlogo")
    raw = multipart(logo, logo)
    assert len(parse(raw)["attachments"]) == 2
    assert [kind for _, kind, _ in attachment_payloads(raw)] == ["image/png"]
    inner = {data for _, _, data in attachment_payloads(winmail_message())}
    assert {b"PK\x03\x04docx", b"hi"} <= inner


def test_payloads_of_unparseable_input_are_empty() -> None:
    """Junk yields nothing rather than raising."""
    assert list(attachment_payloads(b"")) == []
    assert list(attachment_payloads(b"\xff" * 100)) == []


def test_decoded_size_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts past the decoded-size budget are left out with a defect, in both functions."""
    monkeypatch.setattr(ingest.bodies, "MAX_DECODED_BYTES", 3000)
    parts = [
        b"Content-Type: application/octet-stream\n\n" + bytes([65 + i]) * 1000 for i in range(5)
    ]
    raw = multipart(b"Content-Type: text/plain\n\nbody", *parts)
    doc = parse(raw)
    assert len(doc["attachments"]) == 2
    assert "decoded-size-limit" in doc["defects"]
    assert len(list(attachment_payloads(raw))) == 2
    assert doc["text"] == "body"


def test_payloads_collected_while_parsing_equal_attachment_payloads() -> None:
    """The one-pass payloads the poll stores are exactly what attachment_payloads yields."""
    from harness import corpus_files  # noqa: PLC0415
    from ingest.parse import attachment_payloads, parse_message  # noqa: PLC0415

    checked = 0
    for path in corpus_files():
        raw = path.read_bytes()
        collected: list[tuple[str, str, bytes]] = []
        doc = parse_message(
            raw, account="a", uidl="u", sha256="0" * 64, raw_key="k", payloads=collected
        )
        assert collected == list(attachment_payloads(raw))
        assert {sha for sha, _, _ in collected} == {a["sha256"] for a in doc["attachments"]}
        checked += bool(collected)
    assert checked > 10


_B64_NOISE = st.sampled_from([b"=", b"\n", b"\r\n", b" ", b"-", b"*", b"\x00", b"A", b"+", b"/"])


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=120),
    st.lists(st.tuples(st.integers(min_value=0, max_value=200), _B64_NOISE), max_size=4),
    st.lists(st.integers(min_value=0, max_value=200), max_size=2),
)
def test_property_fast_base64_matches_the_stdlib(
    data: bytes, inserts: list[tuple[int, bytes]], drops: list[int]
) -> None:
    """Wherever the one-pass decoder accepts a (damaged) base64 body, it yields exactly the
    bytes ``get_payload(decode=True)`` yields; elsewhere the stdlib decodes it as before."""
    text = bytearray(base64.encodebytes(data))
    for at, noise in inserts:
        text[at % (len(text) + 1) : at % (len(text) + 1)] = noise
    for at in drops:
        if text:
            del text[at % len(text)]
    raw = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    part = parse_bytes(raw + bytes(text), _POLICY)
    expected = part.get_payload(decode=True)
    fast = ingest.bodies._base64_body(part)
    assert fast is None or fast == expected
    assert ingest.bodies._payload(part) == expected


_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_BYTES = st.sampled_from(list(_B64_ALPHABET))
_B64_ODD = st.sampled_from(list(b"==\r\n\t -_.!*\x00\xff"))


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.one_of(_B64_BYTES, _B64_ODD), max_size=40))
def test_property_simd_base64_gives_binascii_bytes(values: list[int]) -> None:
    """The pybase64 route of ``a2b_base64`` answers exactly as ``binascii.a2b_base64``: the
    same bytes, or the same refusal, for text with padding anywhere and stray bytes."""
    text = bytes(values)
    try:
        expected: bytes | None = binascii.a2b_base64(text)
    except binascii.Error:
        expected = None
    try:
        got: bytes | None = ingest.bodies.a2b_base64(text)
    except binascii.Error:
        got = None
    assert got == expected


def test_simd_base64_decodes_a_large_attachment_as_binascii_does() -> None:
    data = bytes(range(256)) * 12_000  # 3 MB
    for body in (data, data[:-1], data[:-2]):  # no, two and one padding bytes
        for text in (base64.b64encode(body), base64.encodebytes(body)):
            assert ingest.bodies.a2b_base64(text) == body
            assert ingest.bodies.a2b_base64(text.replace(b"\n", b"\r\n")) == body

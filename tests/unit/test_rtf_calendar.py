"""Outlook bodies in TNEF (compressed RTF, de-encapsulated) and calendars with many events."""

from __future__ import annotations

import base64
import struct

import compressed_rtf
from hypothesis import given, settings
from hypothesis import strategies as st
from mail_samples import assert_sound, multipart, parse
from test_attachments import invite_message, mapi_binary, tnef_attribute, winmail_message

from ingest import rtf
from ingest.tnef import body

HTML_RTF = (
    rb"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}"
    rb"{\*\htmltag19 <html>}{\*\htmltag50 <body>}\htmlrtf {\b RTF only}\htmlrtf0 "
    rb"Caf\'e9 &amp; more{\*\htmltag84 <br>}\u8364?{\*\mhtmltag84 <skipped>}"
    rb"{\*\htmltag58 </body>}{\*\htmltag27 </html>}}"
)
TEXT_RTF = rb"{\rtf1\ansi\fromtext{\fonttbl x}Line one\par Line\tab two\par}"
PLAIN_RTF = rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}}{\info{\title t}}Plain \b bold\b0  text\par}"


def winmail_with_body(rtf_document: bytes, *, compressed: bool = True) -> bytes:
    """A TNEF stream whose attMAPIProps hold PR_RTF_COMPRESSED, and no files."""
    packed = compressed_rtf.compress(rtf_document, compressed=compressed)
    props = [mapi_binary(0x1009, 0x0102, packed)]
    out = struct.pack("<IH", 0x223E9F78, 1)
    out += tnef_attribute(1, 0x9003, 0x0006, struct.pack("<I", len(props)) + b"".join(props))
    return out


def test_lzfu_round_trip_with_the_reference_compressor() -> None:
    """Our decompressor returns what compressed_rtf compressed, LZFu and MELA alike."""
    for document in (HTML_RTF, TEXT_RTF, PLAIN_RTF * 40):
        for compressed in (True, False):
            defects: set[str] = set()
            packed = compressed_rtf.compress(document, compressed=compressed)
            assert rtf.decompress(packed, defects) == document
            assert defects == set()


def test_html_is_de_encapsulated() -> None:
    """\\fromhtml1: htmltag groups and text outside \\htmlrtf make the HTML; the rest is dropped."""
    found = rtf.body(HTML_RTF, set())
    assert found == rtf.RtfBody("html", "<html><body>Café &amp; more<br>€</body></html>", None)


def test_text_and_plain_rtf_become_text() -> None:
    """\\fromtext and ordinary RTF give their text; tables of fonts and info are skipped."""
    assert rtf.body(TEXT_RTF, set()) == rtf.RtfBody("text", None, "Line one\nLine\ttwo\n")
    assert rtf.body(PLAIN_RTF, set()) == rtf.RtfBody("rtf", None, "Plain bold text\n")


def test_winmail_body_reaches_the_document() -> None:
    """A message with only a winmail.dat gets its HTML body from the compressed RTF."""
    raw = multipart(
        b'Content-Type: application/ms-tnef; name="winmail.dat"\n'
        b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(winmail_with_body(HTML_RTF))
    )
    doc = parse(raw)
    assert_sound(doc)
    (item,) = doc["attachments"]
    assert item["tnef_body"]["source"] == "html"
    assert doc["html"] == "<html><body>Café &amp; more<br>€</body></html>"
    assert doc["text_from_html"] == "Café & more\n€"


def test_mime_body_is_kept_when_there_is_one() -> None:
    """The text/plain part stays the document's body; the TNEF body is on the attachment."""
    doc = parse(winmail_message(winmail_with_body(TEXT_RTF, compressed=False)))
    assert doc["text"] == "see attached"
    assert doc["attachments"][0]["tnef_body"] == {
        "source": "text",
        "text": "Line one\nLine\ttwo\n",
        "html": None,
    }


def test_tnef_without_body_and_damaged_rtf() -> None:
    """No body gives null; a damaged RTF stream gives a defect, never an exception."""
    assert parse(winmail_message())["attachments"][0]["tnef_body"] is None
    defects: set[str] = set()
    assert body(winmail_with_body(HTML_RTF)[:-40], defects) is None
    assert "truncated-tnef" in defects
    assert rtf.decompress(b"short", defects) is None
    assert "invalid-rtf" in defects


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([0x75465A4C, 0x414C454D, 0]))
def test_rtf_junk_never_raises(junk: bytes, kind: int) -> None:
    """Any bytes as compressed RTF, and any RTF text, give a result or None, never an error."""
    defects: set[str] = set()
    packed = struct.pack("<IIII", len(junk) + 12, 10_000, kind, 0) + junk
    document = rtf.decompress(packed, defects)
    if document is not None:
        assert len(document) <= 10_000
        rtf.body(b"{\\rtf1 " + document, defects)
    rtf.body(b"{\\rtf1\\fromhtml1 " + junk, defects)


def test_lzfu_output_is_capped() -> None:
    """A tiny stream cannot expand past the declared size or MAX_RTF_BYTES."""
    packed = compressed_rtf.compress(b"{\\rtf1 " + b"a" * 100_000 + b"}", compressed=True)
    header = struct.pack("<II", len(packed) - 4, 50) + packed[8:]
    assert len(rtf.decompress(header, set()) or b"") == 50


CALENDAR = b"""BEGIN:VCALENDAR\r
METHOD:PUBLISH\r
BEGIN:VEVENT\r
UID:one\r
SUMMARY:Weekly\r
DTSTART;TZID=Europe/Berlin:20240715T100000\r
DTEND;TZID=Europe/Berlin:20240715T110000\r
RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=5\r
ORGANIZER;CN=Ann:mailto:ann@example.com\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:one\r
RECURRENCE-ID;TZID=Europe/Berlin:20240722T100000\r
SUMMARY:Weekly (moved)\r
DTSTART;TZID=Europe/Berlin:20240722T140000\r
DURATION:PT30M\r
STATUS:tentative\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:two\r
SUMMARY:Holiday\r
DTSTART;VALUE=DATE:20240801\r
DTSTART;TZID=No/Such_Zone:20240801T000000\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_every_event_is_summarised() -> None:
    """Each VEVENT gets its own times, recurrence rule, RECURRENCE-ID and zone."""
    doc = parse(invite_message(CALENDAR))
    assert_sound(doc)
    calendar = doc["attachments"][0]["calendar"]
    assert (calendar["method"], calendar["summary"], calendar["event_count"]) == (
        "PUBLISH",
        "Weekly",
        3,
    )
    first, moved, holiday = calendar["events"]
    assert first == {
        "organizer": {"name": "Ann", "address": "ann@example.com"},
        "start": "2024-07-15T08:00:00Z",
        "end": "2024-07-15T09:00:00Z",
        "summary": "Weekly",
        "location": None,
        "uid": "one",
        "status": None,
        "rrule": "FREQ=WEEKLY;COUNT=5;BYDAY=MO",
        "recurrence_id": None,
        "timezone": "Europe/Berlin",
    }
    assert (moved["recurrence_id"], moved["start"], moved["end"]) == (
        "2024-07-22T08:00:00Z",
        "2024-07-22T12:00:00Z",
        "2024-07-22T12:30:00Z",
    )
    assert moved["status"] == "TENTATIVE"
    assert (holiday["start"], holiday["end"], holiday["summary"]) == ("2024-08-01", None, "Holiday")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                b"DTSTART:20240101T090000Z", b"DTSTART;TZID=Bad/Zone:20240101T090000",
                b"DTSTART;VALUE=DATE:2024", b"DTEND:garbage", b"DURATION:PTxx", b"RRULE:FREQ=",
                b"RRULE:FREQ=DAILY;UNTIL=2", b"RECURRENCE-ID:1", b"ORGANIZER:mailto:",
                b"SUMMARY:\xff", b"END:VEVENT", b"BEGIN:VEVENT", b"BEGIN:VTIMEZONE",
                b"TZID:X", b"STATUS:", b"UID;X=1:a",
            ]
        ),
        max_size=25,
    )
)  # fmt: skip
def test_odd_calendars_never_raise(lines: list[bytes]) -> None:
    """Broken times, zones and recurrences give nulls or a defect, never an exception."""
    calendar = b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n" + b"\r\n".join(lines)
    doc = parse(invite_message(calendar + b"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    assert_sound(doc)
    assert doc["parse_error"] is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000) | st.text("{}\\abc rtfpar", max_size=3000).map(str.encode))
def test_lzfu_round_trips_any_bytes(document: bytes) -> None:
    """Whatever the reference compressor packs (repeats, overlaps, ring wrap) comes back."""
    packed = compressed_rtf.compress(document, compressed=True)
    assert rtf.decompress(packed, set()) == document

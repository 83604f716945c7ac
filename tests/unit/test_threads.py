"""Threading: message ids, the normalised thread subject and the ticket reference."""

from __future__ import annotations

import pytest
from mail_samples import corpus, parse

from ingest.threads import thread_subject, ticket_ref


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Invoice 42", "Invoice 42"),
        ("RE: re: Fwd: FW: Invoice 42", "Invoice 42"),
        ("AW: WG: Antw: Rechnung", "Rechnung"),
        ("SV: VS: Faktura", "Faktura"),
        ("RE[2]: Re(3): Re^4: x", "x"),
        ("Re : TR : RV: ENC: x", "ENC: x"),
        ("回复\uff1a你好", "你好"),
        ("  Re:   spaced    out  ", "spaced out"),
        ("Re:", ""),
        ("Reply: not a prefix", "Reply: not a prefix"),
        ("[#123] Re: inner prefixes stay", "[#123] Re: inner prefixes stay"),
    ],
)
def test_thread_subject(subject: str, expected: str) -> None:
    """Reply and forward prefixes go, repeatedly and in any case; the rest stays."""
    assert thread_subject(subject) == expected


def test_thread_subject_of_no_subject() -> None:
    assert thread_subject(None) is None


def test_thread_subject_in_the_document() -> None:
    """A real "Re:" subject threads without its prefix."""
    doc = parse(b"Subject: =?utf-8?q?AW=3A_Re=3A_Gr=C3=BC=C3=9Fe?=\n\nx")
    assert (doc["subject"], doc["thread_subject"]) == ("AW: Re: Grüße", "Grüße")


def test_ticket_ref_from_subject_then_body() -> None:
    """The first capture group; the subject wins over the body; no group: the whole match."""
    defects: set[str] = set()
    assert ticket_ref(r"\[#(\d+)\]", "Re: [#123] printer", "see [#999]", defects) == "123"
    assert ticket_ref(r"\[#(\d+)\]", "printer", "ticket [#999] again", defects) == "999"
    assert ticket_ref(r"TCK-\d+", "Re: TCK-77 printer", None, defects) == "TCK-77"
    assert ticket_ref(r"\[#(\d+)\]", "nothing", "nothing", defects) is None
    assert ticket_ref(None, "[#1]", None, defects) is None
    assert defects == set()


def test_invalid_ticket_pattern_is_a_defect() -> None:
    """A pattern that does not compile gives null and a defect, never an exception."""
    doc = parse(b"Subject: [#1]\n\nx", ticket_pattern=r"\[#(\d+")
    assert doc["ticket_ref"] is None
    assert "invalid-ticket-pattern" in doc["defects"]
    assert doc["parse_error"] is None


def test_ticket_ref_in_the_document() -> None:
    """parse_message passes the account's pattern through; without one the field is null."""
    raw = b"Subject: Re: [Ticket#2024011510000012] printer\n\nbody"
    assert parse(raw, ticket_pattern=r"\[Ticket#(\d+)\]")["ticket_ref"] == "2024011510000012"
    assert parse(raw)["ticket_ref"] is None
    html_only = corpus("mail_test_4.eml")
    assert parse(html_only, ticket_pattern=r"Booking Reference Number: (\w+)")["ticket_ref"] == (
        "B210154"
    )

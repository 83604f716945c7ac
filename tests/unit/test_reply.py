"""Reply splitting: new text, quoted history and signature, each kept."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mail_samples import corpus, parse

from ingest import reply
from ingest.reply import split_reply


@pytest.mark.parametrize(
    "attribution",
    [
        "On Mon, Jan 15, 2024 at 10:00 AM Alice Example <alice@example.com> wrote:",
        "Am 15.01.2024 um 10:00 schrieb Alice Example <alice@example.com>:",
        "Le lun. 15 janv. 2024 à 10:00, Alice Example <alice@example.com> a écrit :",
        "El lun, 15 ene 2024 a las 10:00, Alice Example (<alice@example.com>) escribió:",
        "Il giorno lun 15 gen 2024 alle ore 10:00 Alice <alice@example.com> ha scritto:",
        "On Mon, Jan 15, 2024 at 10:00 AM Alice Example <\nalice@example.com> wrote:",
    ],
)
def test_top_posted_reply_with_attribution(attribution: str) -> None:
    """English, German, French, Spanish, Italian and wrapped attributions start the history."""
    text = f"Thanks, fixed.\n\nBob\n\n{attribution}\n> It is broken.\n> Alice\n"
    assert split_reply(text) == {
        "new_text": "Thanks, fixed.\n\nBob",
        "quoted": f"{attribution}\n> It is broken.\n> Alice",
        "signature": None,
    }


@pytest.mark.parametrize(
    "header",
    [
        "-----Original Message-----\nFrom: Alice\nSent: Monday",
        "----- Original Message -----\nFrom: Alice",
        "-----Ursprüngliche Nachricht-----\nVon: Alice",
        "-------- Message d'origine --------\nDe : Alice",
        "-----Mensaje original-----\nDe: Alice",
        "---------- Forwarded message ---------\nFrom: Alice",
        "From: Alice Example <alice@example.com>\nSent: Monday, January 15, 2024 10:00\nTo: Bob",
        "Von: Alice Example\nGesendet: Montag, 15. Januar 2024 10:00\nAn: Bob",
        "De : Alice Example\nEnvoyé : lundi 15 janvier 2024 10:00\nÀ : Bob",
        "De: Alice Example\nEnviado el: lunes, 15 de enero de 2024 10:00\nPara: Bob",
        "________________________________\nFrom: Alice Example\nSent: Monday",
        "*From:* Alice Example\n*Sent:* Monday",
    ],
)
def test_outlook_history_is_cut(header: str) -> None:
    """Original-message separators and Outlook header blocks start the quoted history."""
    text = f"Done.\n\n{header}\nSubject: problem\n\nIt is broken.\n"
    result = split_reply(text)
    assert result["new_text"] == "Done."
    assert result["quoted"] == f"{header}\nSubject: problem\n\nIt is broken."


def test_signature_after_delimiter_is_kept_apart() -> None:
    """The "-- " line ends the reply; the signature is kept without the delimiter."""
    text = "Fixed it.\n\n-- \nBob Example\nSupport\n\nOn Mon, Alice wrote:\n> broken\n"
    assert split_reply(text) == {
        "new_text": "Fixed it.",
        "quoted": "On Mon, Alice wrote:\n> broken",
        "signature": "Bob Example\nSupport",
    }


@pytest.mark.parametrize(
    "line",
    [
        "Sent from my iPhone",
        "Von meinem iPhone gesendet",
        "Envoyé de mon iPad",
        "Enviado desde mi Samsung Galaxy",
        "Get Outlook for Android",
    ],
)
def test_mobile_signatures(line: str) -> None:
    """A phone's automatic signature near the end is the signature."""
    result = split_reply(f"Yes, go ahead.\n\n{line}\n")
    assert (result["new_text"], result["signature"]) == ("Yes, go ahead.", line)


def test_bottom_posting_and_inline_answers() -> None:
    """When the body starts with quotes, the unquoted lines between them are the new text."""
    text = "Alice wrote:\n> Does it work?\nYes.\n> And the other one?\nNo.\n-- \nBob\n"
    assert split_reply(text) == {
        "new_text": "Yes.\nNo.",
        "quoted": "Alice wrote:\n> Does it work?\n> And the other one?",
        "signature": "Bob",
    }


def test_plain_text_is_all_new() -> None:
    """Text without markers is all new text; mentioning "wrote:" mid-text is no marker."""
    text = "Hello,\nhere is what I wrote: nothing.\n"
    assert split_reply(text) == {"new_text": text.strip(), "quoted": None, "signature": None}
    assert split_reply("") == {"new_text": "", "quoted": None, "signature": None}


def test_corpus_reply_in_italian_outlook() -> None:
    """A real Italian Outlook reply ("Da:" ... "Inviato:") is cut at its header block."""
    reply = parse(corpus("mail_test_7.eml"))["reply"]
    assert reply["new_text"].startswith("Ciao sere mi puoi dire")
    assert reply["quoted"].startswith("Da: export@agade.info")
    assert "Inviato: venerdì 9 giugno 2017" in reply["quoted"]


def test_corpus_signature() -> None:
    """Mailgun's sample: new text, and the signature after "-- "."""
    assert parse(corpus("mailgun-pic.eml"))["reply"] == {
        "new_text": "Мейлган! Хахах!",  # noqa: RUF001 - Cyrillic, as in the message
        "quoted": None,
        "signature": "Regards,\nAlex",
    }


@pytest.mark.timeout(120)  # a hang guard, not a speed check
def test_long_hostile_text_is_fast() -> None:
    """Many long lines full of markers are split in linear time."""
    line = "On " + "x wrote " * 70 + "\n"
    text = (line + "> q\n" + "From: a\n" * 3) * 3000
    split_reply(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "hi",
                "",
                "> q",
                "-- ",
                "On Mon, A wrote:",
                "From: a",
                "Sent: b",
                "Sent from my iPhone",
            ]
        ),
        max_size=20,
    )
)
def test_property_nothing_is_lost(lines: list[str]) -> None:
    """Every non-blank line ends up in exactly one part; only a signature delimiter goes."""
    result = split_reply("\n".join(lines))
    parts = (result["new_text"], result["quoted"], result["signature"])
    kept = Counter(line for part in parts for line in (part or "").split("\n") if line.strip())
    original = Counter(line for line in lines if line.strip())
    missing = original - kept
    assert not kept - original
    assert sum(missing.values()) <= 1
    assert set(missing) <= {"-- "}


def _every_line_marker(lines: list[str]) -> tuple[int, str] | None:
    """The first marker found by trying every line in turn (what ``_first_marker`` did
    before it searched the text for candidate lines first)."""
    for at, raw in enumerate(lines):
        line = raw.strip()
        if not line or len(line) > reply._MAX_LINE:
            continue
        if line.startswith(">"):
            return at, "quote"
        if reply._SEPARATOR.fullmatch(line) or reply._outlook_header(lines, at):
            return at, "cut"
        if reply._UNDERSCORES.fullmatch(line) and reply._outlook_header(
            lines, reply._next(lines, at)
        ):
            return at, "cut"
        if reply._attribution(lines, at):
            return at, "attribution"
    return None


_MARKERS = [
    "On Mon, Jan 1, 2024 at 10:00 AM Bob <b@x> wrote:", "Am 01.01.2024 schrieb Max:",
    "Le lun. 1 janv., Jean a écrit :", "El lunes, Ana escribió:", "Il giorno 1, Lia ha scritto:",
    "Op maandag schreef Jan:", "Em 1 jan, Rui escreveu:", "den 1 jan skrev Per:",
    "Bob wrote:", "BOB WROTE:", "wrote", "> quoted", "  >> deeper", "-----Original Message-----",
    "---------- Forwarded message ---------", "Begin forwarded message:", "From: Bob",
    "*From:* Bob", "FROM:Bob", "Sent: Monday", "Date: today", "Von: Max", "Gesendet: Montag",
    "De : Jean", "Envoyé : lundi", "från: d", "__________________", "-- ", "on the way",
    "hello", "", "   ", "\t", "\xa0From: x", "\u2003> q", "\x1cFrom: a", "\x0c> f", "x\r",
    "\r>", "\u017from: long s", "Kelvin \u017fkrev:", "İl giorno ha scrİtto:", "a" * 700,
    "> " + "b" * 700,
]  # fmt: skip


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_MARKERS), max_size=14))
def test_candidate_search_finds_the_same_first_marker(lines: list[str]) -> None:
    """Searching the text for candidate lines finds the same first marker as trying every
    line: in any language, case, leading blank (Unicode ones too) and line end."""
    text = "\n".join(lines)
    split = text.split("\n")
    assert reply._first_marker(split, text) == _every_line_marker(split)


@pytest.mark.parametrize("lead", ["", "Thanks.\n", "> earlier\n"])
def test_candidate_search_on_every_pair_of_lines(lead: str) -> None:
    """Every marker followed by every marker (a quote after "X wrote:", a "Sent:" after a
    "From:"), after new text or not: the same first marker as trying every line."""
    for first, second in itertools.product(_MARKERS, repeat=2):
        text = f"{lead}{first}\n{second}\nbye"
        split = text.split("\n")
        assert reply._first_marker(split, text) == _every_line_marker(split), text

"""HTML to text: the reading order and layout of an HTML-only body, in linear time."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mail_samples import assert_sound, corpus, parse

import ingest.render
from ingest.render import html_to_text


def render(markup: str) -> str:
    return html_to_text(markup, set())


def test_blocks_lines_lists_and_entities() -> None:
    """Paragraphs are separated by a blank line, <br> breaks a line, entities decode."""
    markup = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<h1>Order&nbsp;#42</h1><p>Dear   <b>Alice</b>,<br>thanks &amp; bye.</p>"
        "<ul><li>one</li><li>two</li></ul><script>alert(1)</script><!-- hidden -->"
        "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td><td>d</td></tr></table></body></html>"
    )
    assert render(markup) == "Order #42\n\nDear Alice,\nthanks & bye.\n\n- one\n- two\n\na\tb\nc\td"


def test_links_show_their_target() -> None:
    """A link's URL follows its text unless the text is the URL; other schemes are dropped."""
    markup = (
        '<p><a href="https://example.com/t/1">your ticket</a> '
        '<a href="https://example.com">https://example.com</a> '
        '<a href="mailto:help@example.com">help@example.com</a> '
        '<a href="javascript:alert(1)">click</a></p>'
    )
    assert render(markup) == (
        "your ticket <https://example.com/t/1> https://example.com help@example.com click"
    )


def test_preformatted_text_keeps_its_spacing() -> None:
    """White space inside <pre> is kept."""
    assert render("<p>x</p><pre>a  b\n  c</pre><p>y</p>") == "x\n\na  b\n  c\n\ny"


def test_broken_markup() -> None:
    """Unclosed tags, stray "<" and an unclosed comment cannot lose the text before them."""
    assert render("a < b <p>c<div") == "a < b\n\nc"
    assert render("text<!-- never closed <p>gone") == "text"
    assert render("<script>never closed") == ""


@pytest.mark.parametrize(
    "markup",
    ["<!--" * 50_000, "<a " * 100_000, "<" * 200_000, "<!" * 100_000, "<script>" * 50_000,
     "&" * 200_000, '<a href="' * 50_000, "</" * 100_000, "<p>" * 100_000],
)  # fmt: skip
@pytest.mark.timeout(60)  # a hang guard, not a speed check
def test_hostile_markup_is_linear(markup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs that make html.parser quadratic (CVE-2025-6069) are rendered in one forward
    pass: every markup construct moves the position on, and there are at most as many
    constructs as characters (counted, not timed, so the test does not depend on load)."""
    steps: list[tuple[int, int]] = []
    original = ingest.render._Renderer.markup

    def counted(self: object, text: str, start: int) -> int:
        end = original(self, text, start)  # type: ignore[arg-type]
        steps.append((start, end))
        return end

    monkeypatch.setattr(ingest.render._Renderer, "markup", counted)
    render(markup)
    assert len(steps) <= len(markup)
    assert all(end > start for start, end in steps)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(steps))


def test_oversized_html_is_truncated(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTML beyond MAX_HTML_CHARS is not rendered, and that is recorded."""
    monkeypatch.setattr(ingest.render, "MAX_HTML_CHARS", 10)
    defects: set[str] = set()
    assert html_to_text("<p>0123456789 past the limit</p>", defects) == "0123456"
    assert defects == {"html-truncated"}


def test_html_only_corpus_message_gets_a_text_rendering() -> None:
    """A real HTML-only message has text_from_html, and its reply split uses it."""
    doc = parse(corpus("mail_test_4.eml"))
    assert_sound(doc)
    assert doc["text"] is None
    assert doc["text_from_html"].startswith("Dear All,\n\nWe have made the payment")
    assert doc["reply"]["new_text"].startswith("Dear All,")


def test_text_part_wins_over_rendering() -> None:
    """With a text/plain body, text_from_html stays null."""
    doc = parse(corpus("mailgun-pic.eml"))
    assert doc["html"] is not None
    assert doc["text_from_html"] is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["<p>", "</p>", "<br>", "<a href='http://x'>", "</a>", "x",
                                 " ", "&amp;", "<pre>", "</pre>", "<!--", "-->", "<"]),
                max_size=30).map("".join))  # fmt: skip
def test_property_any_markup_renders(markup: str) -> None:
    """Any mix of tags gives text with no tag-induced run of more than one blank line."""
    text = render(markup)
    assert "\n\n\n" not in text
    assert text == text.strip("\n")

"""Render an HTML body as plain text: paragraphs, line breaks, list items, table rows, links.

A single linear pass over the markup with ``str.find`` and anchored regexes, not a DOM.
Not ``html.parser``: in this interpreter (3.11.7) it is quadratic on unclosed comments and
declarations (50,000 ``<!--`` take 11 s; 100,000 ``<a `` did not finish), the problem later
fixed as CVE-2025-6069, and BeautifulSoup's default parser is the same code. html2text is
GPL-3.0. Broken markup cannot hurt this pass: a tag runs to the next ``>`` or ``<``, a
comment or ``<script>`` never closed hides the rest, and input past ``MAX_HTML_CHARS`` is
not rendered (``html-truncated``).
"""

from __future__ import annotations

import html
import re

MAX_HTML_CHARS = 4 * 1024 * 1024

_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)([^<>]*)>?")
_HREF = re.compile(r"""(?i)\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_SPACE = re.compile(r"[ \t\r\n\f\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})
_PARAGRAPHS = frozenset({
    "p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "dl", "table", "blockquote",
    "pre", "hr", "form", "section", "article", "header", "footer", "nav", "aside", "main",
    "address", "figure", "fieldset", "center",
})  # fmt: skip
_LINES = frozenset({"br", "tr", "li", "dt", "dd", "caption", "option"})
_CELLS = frozenset({"td", "th"})
_CLOSERS: dict[str, re.Pattern[str]] = {
    name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in _HIDDEN
}


def html_to_text(markup: str, defects: set[str]) -> str:
    """The text a reader sees in an HTML body, as plain text with blank lines between blocks."""
    if len(markup) > MAX_HTML_CHARS:
        defects.add("html-truncated")
        markup = markup[:MAX_HTML_CHARS]
    renderer = _Renderer()
    renderer.feed(markup)
    text = "\n".join(line.rstrip() for line in "".join(renderer.out).split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip("\n")


class _Renderer:
    """Writes text pieces to ``out``; ``pre`` counts open <pre> elements."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.pre = 0
        self.link: tuple[str, int] | None = None  # href, and where its text starts in out

    def feed(self, markup: str) -> None:
        position = 0
        while position < len(markup):
            start = markup.find("<", position)
            if start < 0:
                start = len(markup)
            self.text(markup[position:start])
            position = self.markup(markup, start) if start < len(markup) else start

    def markup(self, markup: str, start: int) -> int:
        """Handle the construct at ``start`` (a "<"); return where the text goes on."""
        if markup.startswith("<!--", start):
            return _after(markup, "-->", start + 4)
        if markup.startswith(("<!", "<?"), start):
            return _after(markup, ">", start + 2)
        tag = _TAG.match(markup, start)
        if tag is None:
            self.text("<")
            return start + 1
        closing, name = tag.group(1) == "/", tag.group(2).lower()
        if not closing and name in _HIDDEN:
            found = _CLOSERS[name].search(markup, tag.end())
            return len(markup) if found is None else _after(markup, ">", found.end() - 1)
        self.element(name, closing, tag.group(3))
        return tag.end()

    def element(self, name: str, closing: bool, attributes: str) -> None:
        if name in _PARAGRAPHS:
            self.pre += (-1 if closing else 1) if name == "pre" else 0
            self.pre = max(self.pre, 0)
            self.newline(2)
        elif name in _LINES:
            self.newline(1)
            if name == "li" and not closing:
                self.out.append("- ")
        elif name in _CELLS and closing:
            self.out.append("\t")
        elif name == "a":
            self.anchor(closing, attributes)

    def anchor(self, closing: bool, attributes: str) -> None:
        """Write a link's target after its text, unless the text already shows it."""
        if not closing:
            href = _HREF.search(attributes)
            target = html.unescape(next((g for g in href.groups() if g), "")) if href else ""
            if target.startswith(("http:", "https:", "mailto:")):
                self.link = (target, len(self.out))
            return
        if self.link is None:
            return
        target, start = self.link
        self.link = None
        shown = "".join(self.out[start:]).strip()
        if shown and shown != target and shown != target.removeprefix("mailto:"):
            self.out.append(f" <{target}>")

    def text(self, raw: str) -> None:
        if not raw:
            return
        text = html.unescape(raw)
        if self.pre:
            self.out.append(text.replace("\r\n", "\n"))
            return
        text = _SPACE.sub(" ", text)
        if not self.out or self.out[-1].endswith(("\n", "\t", " ")):
            text = text.lstrip(" ")
        if text:
            self.out.append(text)

    def newline(self, count: int) -> None:
        """End the current line, leaving at most ``count`` line breaks in a row."""
        if not self.out:
            return
        tail = "".join(self.out[-count:]) if count > 1 else self.out[-1]
        have = len(tail) - len(tail.rstrip("\n"))
        if have < count:
            self.out.append("\n" * (count - have))


def _after(markup: str, end: str, start: int) -> int:
    """The position after the next ``end`` from ``start``; the end of input if there is none."""
    found = markup.find(end, start)
    return len(markup) if found < 0 else found + len(end)

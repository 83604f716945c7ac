"""Build the same ``Message`` tree as the stdlib feed parser, without its line-by-line loop.

The feed parser reads a message one line at a time through a stack of predicates (about
55% of our parse time on real mail, most of it spent walking base64 lines). ``parse_bytes``
finds the same structure with ``str.find``: header blocks line by line (they are short),
bodies and boundary lines by search. It builds the tree through the same calls in the same
order (``policy.message_factory``, ``attach`` before the headers are read, ``set_raw`` with
``policy.header_source_parse``, ``set_payload``, ``preamble``, ``epilogue``), so the limits of
``ingest.bodies.BoundedMessage`` apply unchanged.

It only takes the well-formed road. Whenever the feed parser would record a defect or take
an unusual branch (a bare CR line end, a header line that is neither a field nor a
continuation, a misplaced ``From `` line, a multipart without boundary or with a missing
start or close boundary, two boundary lines in a row, ``multipart/digest``,
``message/delivery-status``, a multipart with a transfer encoding), the whole message is
parsed by the feed parser instead. ``tests/unit/test_mime.py`` checks that both give equal
trees for every corpus message and for generated ones.
"""

from __future__ import annotations

import re
from email import errors, message_from_bytes
from email.message import Message
from email.policy import Policy
from functools import lru_cache
from typing import Any

from ingest.bounded import BoundedMessage

# The feed parser's test for a header line (email.feedparser.headerRE).
_HEADER_LINE = re.compile(r"(From |[\041-\071\073-\176]*:|[\t ])")
_MULTIPART_CTE = ("7bit", "8bit", "binary")
_BARE_CR = re.compile(rb"\r(?!\n)")  # on the bytes: their CR and LF are the text's


class _Unusual(Exception):
    """The message leaves the well-formed road: let the feed parser handle all of it."""


def parse_bytes(raw: bytes, policy: Policy[Any]) -> Message:
    """The message tree of ``raw``, equal to ``email.message_from_bytes(raw, policy=policy)``."""
    if _BARE_CR.search(raw):  # a bare CR ends a line for the feed parser
        return message_from_bytes(raw, policy=policy)
    text = raw.decode("ascii", "surrogateescape")
    try:
        root = _Builder(text, policy).message(0, len(text), None)
    except _Unusual:
        return message_from_bytes(raw, policy=policy)
    if root.get_content_maintype() == "multipart" and not root.is_multipart():
        policy.handle_defect(root, errors.MultipartInvariantViolationDefect())
    return root


@lru_cache(maxsize=256)
def _boundary_line(boundary: str) -> re.Pattern[str]:
    """A boundary line, matched where ``--boundary`` starts a line (feed parser's boundaryre)."""
    return re.compile("--" + re.escape(boundary) + r"(--)?[ \t]*(\r?\n|\Z)")


def _strip_eol(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


class _Builder:
    """Parses regions ``[start, end)`` of one message text; each region is whole lines."""

    def __init__(self, text: str, policy: Policy[Any]) -> None:
        self.text = text
        self.policy = policy
        self.factory = policy.message_factory or Message

    def defect(self, msg: Message, defect: errors.MessageDefect) -> None:
        self.policy.handle_defect(msg, defect)

    def message(self, start: int, end: int, parent: Message | None) -> Message:
        """One message (or part) occupying ``[start, end)``; returns it, attached to parent."""
        msg: Message = self.factory(policy=self.policy)
        if parent is not None:
            if parent.get_content_type() == "multipart/digest":
                msg.set_default_type("message/rfc822")
            parent.attach(msg)
        if isinstance(msg, BoundedMessage):
            msg.source = (self.text, start, end)
        body = self.headers(msg, start, end)
        if msg.get_content_type() == "message/delivery-status":
            self.header_blocks(msg, body, end)
            return msg
        maintype = msg.get_content_maintype()
        if maintype == "message":
            self.message(body, end, msg)
        elif maintype == "multipart":
            self.multipart(msg, body, end)
        else:
            msg.set_payload(self.text[body:end])
        return msg

    def headers(self, msg: Message, start: int, end: int) -> int:
        """Read the header block at ``start`` into msg; returns where the body starts."""
        text, at, lines = self.text, start, []
        while at < end:
            stop = text.find("\n", at, end)
            stop = end if stop < 0 else stop + 1
            line = text[at:stop]
            if line in ("\n", "\r\n"):
                at = stop
                break
            if not _HEADER_LINE.match(line):
                self.defect(msg, errors.MissingHeaderBodySeparatorDefect())
                break
            lines.append(line)
            at = stop
        self.fields(msg, lines)
        return at

    def fields(self, msg: Message, lines: list[str]) -> None:
        """The feed parser's ``_parse_headers``."""
        value: list[str] = []
        for number, line in enumerate(lines):
            if line[0] in " \t":
                if not value:
                    self.defect(msg, errors.FirstHeaderLineIsContinuationDefect(line))
                else:
                    value.append(line)
                continue
            if value:
                msg.set_raw(*self.policy.header_source_parse(value))
                value = []
            if line.startswith("From "):
                if number == 0:
                    msg.set_unixfrom(_strip_eol(line))
                elif number == len(lines) - 1:
                    raise _Unusual  # pushed back as the first body line, before the blank one
                else:
                    self.defect(msg, errors.MisplacedEnvelopeHeaderDefect(line))
                continue
            if line.startswith(":"):
                self.defect(msg, errors.InvalidHeaderDefect("Missing header name."))
                continue
            value = [line]
        if value:
            msg.set_raw(*self.policy.header_source_parse(value))

    def header_blocks(self, msg: Message, start: int, end: int) -> None:
        """message/delivery-status: header blocks separated by empty lines, each a message."""
        text, at = self.text, start
        while True:
            stop = _next_empty_line(text, at, end)
            self.message(at, stop, msg)
            if stop >= end:
                return
            at = text.index("\n", stop, end) + 1
            if at >= end:
                return

    def multipart(self, msg: Message, start: int, end: int) -> None:
        """Preamble, the parts between boundary lines, and the epilogue after the close."""
        boundary = msg.get_boundary()
        if boundary is None:
            self.defect(msg, errors.NoBoundaryInMultipartDefect())
            msg.set_payload(self.text[start:end])
            return
        if str(msg.get("content-transfer-encoding", "8bit")).lower() not in _MULTIPART_CTE:
            self.defect(msg, errors.InvalidMultipartContentTransferEncodingDefect())
        pattern = _boundary_line(boundary)
        at = self.next_boundary(pattern, boundary, start, end)
        match = None if at is None else pattern.match(self.text, at)
        if at is None or match is None or match.group(1):
            self.defect(msg, errors.StartBoundaryNotFoundDefect())
            msg.set_payload(self.text[start : end if at is None else at])
            msg.epilogue = ""
            return
        if at > start:
            msg.preamble = _strip_eol(self.text[start:at])
        self.parts(msg, pattern, boundary, at, end)

    def parts(
        self, msg: Message, pattern: re.Pattern[str], boundary: str, at: int, end: int
    ) -> None:
        """The parts from the first boundary line at ``at`` on, then the epilogue."""
        text = self.text
        while True:
            match = pattern.match(text, at)
            assert match is not None
            if match.group(1):
                msg.epilogue = text[match.end() : end]
                return
            part_start = match.end()
            while (follow := pattern.match(text, part_start)) is not None:
                part_start = follow.end()  # boundary lines in a row are all skipped
            after = self.next_boundary(pattern, boundary, part_start, end)
            _strip_last(self.message(part_start, end if after is None else after, msg))
            if after is None:
                self.defect(msg, errors.CloseBoundaryNotFoundDefect())
                return
            at = after

    def next_boundary(
        self, pattern: re.Pattern[str], boundary: str, at: int, end: int
    ) -> int | None:
        """Where the next line matching the boundary starts in ``[at, end)``, or None."""
        text, needle = self.text, "--" + boundary
        while True:
            found = text.find(needle, at, end)
            if found < 0:
                return None
            if (found == 0 or text[found - 1] == "\n") and pattern.match(text, found):
                return found
            at = found + 1


def _next_empty_line(text: str, at: int, end: int) -> int:
    """Where the next empty line in ``[at, end)`` starts, or ``end``."""
    if text.startswith(("\n", "\r\n"), at, end):
        return at
    found = [i + 1 for i in (text.find("\n\n", at, end), text.find("\n\r\n", at, end)) if i >= 0]
    return min(found) if found else end


def _strip_last(part: Message) -> None:
    """The line end before a boundary belongs to it: take it from the part parsed last.

    That is the feed parser's ``_last``: the innermost (last) message of a message/* part,
    else the part itself; a multipart loses it from its epilogue (an empty one becomes None).
    """
    last: Any = part  # the raw ``_payload`` is what the feed parser strips
    while last.get_content_maintype() == "message" and last.is_multipart():
        last = last.get_payload()[-1]
    if last.get_content_maintype() == "multipart":
        if last.epilogue == "":
            last.epilogue = None
        elif last.epilogue is not None:
            last.epilogue = _strip_eol(last.epilogue)
    elif isinstance(last._payload, str):
        last._payload = _strip_eol(last._payload)

"""Read the files inside a TNEF stream (winmail.dat, application/ms-tnef), in linear time.

Our own reader of the format ([MS-OXTNEF]) rather than ``tnefparse``: that library copies
the rest of the stream at every attribute (quadratic) and loops up to 2**32 times on a
count read from the input, so a 1 KB hostile winmail.dat hangs it. Here every loop is bounded
by the bytes left, a damaged stream yields the files read before the damage (with a
defect), and nothing raises.

Only what attachments need is read: each file's name (long name, 8.3 name, title or display
name), MIME tag, Content-ID and bytes. An embedded message (a MAPI object whose interface is
IMessage) is itself TNEF: it is returned as an ``application/ms-tnef`` file for the caller
to unpack in turn, within its own depth limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ingest import rtf
from ingest.headers import clean_text, decode_bytes

SIGNATURE = b"\x78\x9f\x3e\x22"
MAX_TNEF_FILES = 500

_LEVEL_MESSAGE, _LEVEL_ATTACHMENT = 1, 2
_ATT_BODY, _ATT_MAPI_PROPS = 0x800C, 0x9003
_PR_BODY, _PR_RTF_COMPRESSED, _PR_HTML = 0x1000, 0x1009, 0x1013
_BODY_PROPS = frozenset({_PR_BODY, _PR_RTF_COMPRESSED, _PR_HTML})
_ATT_ATTACH_DATA, _ATT_ATTACH_TITLE = 0x800F, 0x8010
_ATT_ATTACH_REND_DATA, _ATT_ATTACHMENT, _ATT_OEM_CODEPAGE = 0x9002, 0x9005, 0x9007
_PR_DISPLAY_NAME, _PR_ATTACH_DATA, _PR_ATTACH_FILENAME = 0x3001, 0x3701, 0x3704
_PR_ATTACH_LONG_FILENAME, _PR_ATTACH_MIME_TAG, _PR_ATTACH_CONTENT_ID = 0x3707, 0x370E, 0x3712
_NAMES = (_PR_ATTACH_LONG_FILENAME, _PR_ATTACH_FILENAME, _ATT_ATTACH_TITLE, _PR_DISPLAY_NAME)
_IID_IMESSAGE = bytes.fromhex("0703020000000000c000000000000046")
_FIXED_SIZES = {0x0002: 4, 0x0003: 4, 0x0004: 4, 0x000A: 4, 0x000B: 4, 0x0005: 8, 0x0006: 8}
_FIXED_SIZES |= {0x0007: 8, 0x0014: 8, 0x0040: 8, 0x0048: 16, 0x0001: 0}
_STRING8, _UNICODE, _OBJECT, _BINARY = 0x001E, 0x001F, 0x000D, 0x0102
_MULTI = 0x1000
_CODEPAGES = {65001: "utf-8", 20127: "ascii", 28591: "latin-1", 20866: "koi8-r"}


@dataclass(frozen=True, slots=True)
class TnefFile:
    """One file found in a TNEF stream."""

    filename: str | None
    content_type: str | None
    content_id: str | None
    data: bytes = field(repr=False)


def is_tnef(data: bytes) -> bool:
    """True if the bytes start with the TNEF signature."""
    return data.startswith(SIGNATURE)


@dataclass(frozen=True, slots=True)
class TnefBody:
    """The message body a TNEF stream carries: plain text, HTML, and how it was found.

    ``source`` is "html", "text" or "rtf" when the body came from the compressed RTF (see
    ``ingest.rtf``), "mapi" when only the plain/HTML body properties were present.
    """

    source: str
    text: str | None
    html: str | None


def body(data: bytes, defects: set[str]) -> TnefBody | None:
    """The message body of a TNEF stream (PR_RTF_COMPRESSED de-encapsulated, PR_HTML,
    PR_BODY or attBody), or None when it carries none. Never raises.
    """
    if not is_tnef(data):
        return None
    reader = _Stream(data, defects)
    reader.read()
    found = reader.body
    text: str | None = _text(
        found.get(_PR_BODY) or found.get(_ATT_BODY), reader.charset, defects, strip=False
    )
    html_bytes = found.get(_PR_HTML)
    html: str | None = None
    if isinstance(html_bytes, bytes):
        html = decode_bytes(html_bytes, "utf-8", defects)
    source = "mapi"
    compressed = found.get(_PR_RTF_COMPRESSED)
    if isinstance(compressed, bytes) and not html:
        rtf_body = _rtf_body(compressed, defects)
        if rtf_body is not None:
            source, html = rtf_body.source, rtf_body.html
            text = text or rtf_body.text
    if not (text or html):
        return None
    return TnefBody(source, text or None, html or None)


def _rtf_body(compressed: bytes, defects: set[str]) -> rtf.RtfBody | None:
    document = rtf.decompress(compressed, defects)
    return None if document is None else rtf.body(document, defects)


def unpack(data: bytes, defects: set[str]) -> list[TnefFile]:
    """The files of a TNEF stream in order, at most MAX_TNEF_FILES of them."""
    if not is_tnef(data):
        defects.add("invalid-tnef")
        return []
    reader = _Stream(data, defects)
    reader.read()
    return [
        draft.file(reader.charset, defects) for draft in reader.drafts if draft.data is not None
    ]


@dataclass(slots=True)
class _Draft:
    """What has been read of one attachment so far: raw names by property, data, tags."""

    names: dict[int, bytes | str] = field(default_factory=dict)
    data: bytes | None = None
    mime_tag: bytes | str | None = None
    content_id: bytes | str | None = None

    def file(self, charset: str, defects: set[str]) -> TnefFile:
        name = next((self.names[key] for key in _NAMES if self.names.get(key)), None)
        return TnefFile(
            _text(name, charset, defects) or None,
            _text(self.mime_tag, charset, defects).lower() or None,
            _text(self.content_id, charset, defects).strip("<>") or None,
            self.data or b"",
        )


class _Stream:
    """The attribute sequence: level (1), id (2), type (2), length (4), value, checksum (2)."""

    def __init__(self, data: bytes, defects: set[str]) -> None:
        self.data, self.defects = data, defects
        self.charset = "cp1252"
        self.drafts: list[_Draft] = []
        self.body: dict[int, bytes | str] = {}  # message-level body attributes and properties

    def read(self) -> None:
        offset = 6  # signature and legacy key
        while offset < len(self.data):
            if len(self.drafts) > MAX_TNEF_FILES:
                self.defects.add("tnef-too-many-files")
                self.drafts = self.drafts[:MAX_TNEF_FILES]
                return
            head = self.data[offset : offset + 9]
            end = offset + 9 + int.from_bytes(head[5:9], "little")
            if len(head) < 9 or end > len(self.data):
                self.defects.add("truncated-tnef")
                return
            self.attribute(head[0], int.from_bytes(head[1:3], "little"), offset + 9, end)
            offset = end + 2

    def attribute(self, level: int, name: int, start: int, end: int) -> None:
        if name == _ATT_OEM_CODEPAGE and end - start >= 4:
            number = int.from_bytes(self.data[start : start + 4], "little")
            self.charset = _CODEPAGES.get(number, f"cp{number}")
        if level == _LEVEL_MESSAGE:
            self.message_attribute(name, start, end)
        if level != _LEVEL_ATTACHMENT:
            return
        if name == _ATT_ATTACH_REND_DATA or not self.drafts:
            self.drafts.append(_Draft())
        draft = self.drafts[-1]
        if name == _ATT_ATTACH_DATA:
            draft.data = self.data[start:end]
        elif name == _ATT_ATTACH_TITLE:
            draft.names[name] = self.data[start:end]
        elif name == _ATT_ATTACHMENT:
            _Properties(self.data, start, end, self.defects).into(draft)

    def message_attribute(self, name: int, start: int, end: int) -> None:
        """Keep the body: attBody, and PR_BODY, PR_RTF_COMPRESSED, PR_HTML from attMAPIProps."""
        if name == _ATT_BODY:
            self.body[_ATT_BODY] = self.data[start:end]
        elif name == _ATT_MAPI_PROPS:
            _Properties(self.data, start, end, self.defects).into_body(self.body)


class _Properties:
    """A MAPI property list: count (4), then per property type (2), id (2) and its values."""

    def __init__(self, data: bytes, start: int, end: int, defects: set[str]) -> None:
        self.data, self.at, self.end, self.defects = data, start, end, defects

    def into(self, draft: _Draft) -> None:
        for ident, kind, values in self.each():
            _file_property(draft, ident, kind, values)

    def into_body(self, found: dict[int, bytes | str]) -> None:
        for ident, kind, values in self.each():
            if ident in _BODY_PROPS and values:
                value = values[0]
                found[ident] = value.decode("utf-16-le", "replace") if kind == _UNICODE else value

    def each(self) -> Iterator[tuple[int, int, list[bytes]]]:
        """(id, type without the multi-value flag, values) of each property, until damage."""
        count = self.number()
        for _ in range(count):
            if self.at + 4 > self.end:
                return
            kind, ident = self.number(2), self.number(2)
            values = self.values(kind, ident)
            if values is None:
                self.defects.add("invalid-tnef-property")
                return
            yield ident, kind & ~_MULTI, values

    def values(self, kind: int, ident: int) -> list[bytes] | None:
        """The values of one property (None when its type is unknown or it overruns)."""
        if ident >= 0x8000:  # a named property: GUID, then a number or a UTF-16 name
            self.at += 16
            named_by_string = self.number() != 0
            self.at += _padded(self.number()) if named_by_string else 4
        multi = bool(kind & _MULTI)
        kind &= ~_MULTI
        count = self.number() if multi or kind not in _FIXED_SIZES else 1
        values: list[bytes] = []
        if _FIXED_SIZES.get(kind) == 0:  # PtypNull: no value bytes at all
            return values
        for _ in range(count):
            if self.at > self.end:
                return None
            if kind in _FIXED_SIZES:
                values.append(self.take(_FIXED_SIZES[kind]))
            elif kind in (_STRING8, _UNICODE, _OBJECT, _BINARY):
                size = self.number()
                values.append(self.take(size))
                self.at += _padded(size) - size
            else:
                return None
        return None if self.at > self.end else values

    def number(self, size: int = 4) -> int:
        return int.from_bytes(self.take(size), "little")

    def take(self, size: int) -> bytes:
        chunk = self.data[self.at : min(self.at + size, self.end)]
        self.at += size
        return chunk


def _file_property(draft: _Draft, ident: int, kind: int, values: list[bytes]) -> None:
    """Keep the properties an attachment needs; decode UTF-16 strings here."""
    if not values:
        return
    value: bytes | str = values[0]
    if kind == _UNICODE:
        value = values[0].decode("utf-16-le", "replace")
    if ident in _NAMES:
        draft.names[ident] = value
    elif ident == _PR_ATTACH_MIME_TAG:
        draft.mime_tag = value
    elif ident == _PR_ATTACH_CONTENT_ID:
        draft.content_id = value
    elif ident == _PR_ATTACH_DATA and draft.data is None:
        draft.data = values[0]
        if kind == _OBJECT:  # an object starts with its interface id
            draft.data = values[0][16:]
            if values[0].startswith(_IID_IMESSAGE):
                draft.mime_tag = draft.mime_tag or "application/ms-tnef"


def _text(value: bytes | str | None, charset: str, defects: set[str], *, strip: bool = True) -> str:
    """A property's text, its terminating NULs removed; made safe as header text is, unless
    it is a body (``strip=False``: line breaks kept).
    """
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = decode_bytes(value, charset, defects)
    value = value.rstrip("\x00")
    return clean_text(value, defects).strip() if strip else value.replace("\r\n", "\n")


def _padded(size: int) -> int:
    """A value's size rounded up to the 4-byte boundary TNEF pads it to."""
    return size + (-size % 4)

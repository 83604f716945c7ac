"""Read an Outlook RTF body: decompress it ([MS-OXRTFCP]) and recover HTML or text ([MS-OXRTFEX]).

TNEF (winmail.dat) carries the message body as ``PR_RTF_COMPRESSED``: LZFu-compressed RTF
(or ``MELA``, stored uncompressed). Outlook wraps an HTML body in RTF (``\\fromhtml1``: the
HTML tags sit in ``{\\*\\htmltag ...}`` groups, RTF-only text is fenced by ``\\htmlrtf``),
a plain text body likewise (``\\fromtext``); other RTF is turned into its plain text.

Our own small readers, not ``compressed_rtf`` and ``RTFDE``: both are linear and kept, but
the decompressor trusts the declared size and raises on damage, and RTFDE pulls in a
grammar engine and raises on RTF it does not expect. Here output is capped
(``MAX_RTF_BYTES``, ``MAX_TEXT_CHARS``), every loop is bounded by its input, damage ends the
read with a defect, and nothing raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_RTF_BYTES = 16 * 1024 * 1024
MAX_TEXT_CHARS = 4 * 1024 * 1024

_LZFU, _MELA = 0x75465A4C, 0x414C454D
_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern "
    b"\\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0"
    b"\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\([^a-zA-Z])"
    rb"|([{}])|([^\\{}\r\n]+)|[\r\n]+"
)
# Destinations whose content is not body text.
_SKIPPED = frozenset(
    b"fonttbl colortbl stylesheet info pict object header footer headerl headerr footerl "
    b"footerr listtable listoverridetable rsidtbl generator xmlnstbl themedata fldinst "
    b"colorschememapping latentstyles datastore filetbl revtbl mhtmltag bkmkstart bkmkend".split()
)
_SYMBOLS = {
    b"par": "\n", b"line": "\n", b"tab": "\t", b"emdash": "\u2014", b"endash": "\u2013",
    b"lquote": "\u2018", b"rquote": "\u2019", b"ldblquote": "\u201c", b"rdblquote": "\u201d",
    b"bullet": "\u2022", b"~": "\u00a0", b"\n": "\n", b"\r": "\n", b"_": "\u2011",
    b"{": "{", b"}": "}", b"\\": "\\",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RtfBody:
    """What an RTF body holds: ``source`` is "html", "text" or "rtf" (what it was made from)."""

    source: str
    html: str | None
    text: str | None


def decompress(data: bytes, defects: set[str]) -> bytes | None:
    """The RTF inside ``PR_RTF_COMPRESSED`` bytes; None (noted) when they are not such."""
    if len(data) < 16:
        defects.add("invalid-rtf")
        return None
    raw_size = int.from_bytes(data[4:8], "little")
    kind = int.from_bytes(data[8:12], "little")
    if kind == _MELA:
        return data[16 : 16 + min(raw_size, MAX_RTF_BYTES)]
    if kind != _LZFU:
        defects.add("invalid-rtf")
        return None
    return _lzfu(data, min(raw_size, MAX_RTF_BYTES), defects)


def _lzfu(data: bytes, limit: int, defects: set[str]) -> bytes:
    """LZ77 with a 4096-byte ring preloaded with common RTF; stops at its end marker."""
    ring = bytearray(4096)
    ring[: len(_PREBUF)] = _PREBUF
    write, out, at, end = len(_PREBUF), bytearray(), 16, len(data)
    while at < end and len(out) < limit:
        flags, at = data[at], at + 1
        for bit in range(8):
            if at >= end:
                break
            if not flags >> bit & 1:
                ring[write] = data[at]
                out.append(data[at])
                write, at = (write + 1) % 4096, at + 1
                continue
            if at + 2 > end:
                defects.add("truncated-rtf")
                return bytes(out[:limit])
            ref, at = int.from_bytes(data[at : at + 2], "big"), at + 2
            offset, length = ref >> 4, (ref & 0xF) + 2
            if offset == write:
                return bytes(out[:limit])
            write = _copy(ring, offset, length, write, out)
    return bytes(out[:limit])


def _copy(ring: bytearray, offset: int, length: int, write: int, out: bytearray) -> int:
    """Copy a back-reference through the ring; returns the new write position.

    A reference that neither wraps nor overlaps what it writes is copied as one slice; else
    byte by byte, since each byte written may be read again within the same reference.
    """
    if max(offset, write) + length <= 4096 and (
        offset + length <= write or write + length <= offset
    ):
        chunk = ring[offset : offset + length]
        ring[write : write + length] = chunk
        out += chunk
        return (write + length) % 4096
    for step in range(length):
        byte = ring[(offset + step) % 4096]
        ring[write] = byte
        out.append(byte)
        write = (write + 1) % 4096
    return write


def body(rtf: bytes, defects: set[str]) -> RtfBody | None:
    """The HTML or text an RTF document holds; None (noted) if it is no RTF."""
    if not rtf.lstrip().startswith(b"{\\rtf"):
        defects.add("invalid-rtf")
        return None
    head = rtf[:1024]
    source = "html" if b"\\fromhtml" in head else "text" if b"\\fromtext" in head else "rtf"
    content = _Reader(rtf, source == "html").read()
    if len(content) > MAX_TEXT_CHARS:
        defects.add("rtf-body-truncated")
        content = content[:MAX_TEXT_CHARS]
    if source == "html":
        return RtfBody(source, content, None)
    return RtfBody(source, None, content.replace("\r\n", "\n"))


@dataclass(slots=True)
class _State:
    """Per-group state: skipped destination, inside \\htmlrtf, inside an htmltag, \\uc."""

    skip: bool = False
    htmlrtf: bool = False
    tag: bool = False
    uc: int = 1


class _Reader:
    """One pass over the RTF tokens, collecting the text a reader would see."""

    def __init__(self, rtf: bytes, html: bool) -> None:
        self.rtf, self.html = rtf, html
        self.codepage = "cp1252"
        self.out: list[str] = []
        self.pending = bytearray()  # \'hh bytes, decoded together by the code page
        self.size = 0

    def read(self) -> str:
        state, stack, skip_chars, starred = _State(), [], 0, False
        for match in _TOKEN.finditer(self.rtf):
            word, number, hexbyte, symbol, brace, text = match.groups()
            if brace is not None:
                if brace == b"{":
                    stack.append(state)
                    state = _State(state.skip, state.htmlrtf, state.tag, state.uc)
                elif stack:
                    state = stack.pop()
                starred = False
                continue
            if symbol == b"*":
                starred = True
                continue
            if word is not None:
                skip_chars = self.control(state, word, number, starred, skip_chars)
                starred = False
                continue
            starred = False
            if skip_chars:  # the fallback characters after a \uN
                skip_chars -= 1
                continue
            if hexbyte is not None:
                self.byte(state, int(hexbyte, 16))
            elif symbol is not None:
                self.emit(state, _SYMBOLS.get(symbol, ""))
            elif text is not None:
                self.emit(state, text.decode(self.codepage, "replace"))
            if self.size > MAX_TEXT_CHARS:
                break
        self.flush()
        return "".join(self.out)

    def control(
        self, state: _State, word: bytes, number: bytes | None, starred: bool, skip: int
    ) -> int:
        """Apply one control word; returns how many fallback characters to skip next."""
        if starred or word in _SKIPPED:
            state.tag = word == b"htmltag" and self.html
            state.skip = state.skip or not state.tag
        elif word == b"htmlrtf":
            state.htmlrtf = number != b"0"
        elif word == b"uc" and number is not None:
            state.uc = min(int(number), 10)
        elif word == b"ansicpg" and number is not None:
            self.codepage = _codepage(int(number))
        elif word == b"u" and number is not None:
            self.emit(state, chr(int(number) % 65536))
            return state.uc
        elif word in _SYMBOLS:
            self.emit(state, _SYMBOLS[word])
        return skip

    def visible(self, state: _State) -> bool:
        return not state.skip and (state.tag or not state.htmlrtf)

    def byte(self, state: _State, value: int) -> None:
        if self.visible(state):
            self.pending.append(value)

    def emit(self, state: _State, text: str) -> None:
        if text and self.visible(state):
            self.flush()
            self.out.append(text)
            self.size += len(text)

    def flush(self) -> None:
        if self.pending:
            self.out.append(self.pending.decode(self.codepage, "replace"))
            self.size += len(self.pending)
            self.pending = bytearray()


def _codepage(number: int) -> str:
    """The Python codec of a Windows code page, cp1252 if unknown."""
    name = {65001: "utf-8", 20127: "ascii", 28591: "latin-1"}.get(number, f"cp{number}")
    try:
        b"a".decode(name)
    except LookupError:
        return "cp1252"
    return name

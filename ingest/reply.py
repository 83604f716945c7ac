"""Split a text body into the new reply, the quoted history and the signature, keeping all.

Markers of quoted history, in English, German, French, Spanish, Italian, Dutch and
Portuguese: an attribution ("On ... wrote:", "Am ... schrieb ...:", "Le ... a écrit :",
"El ... escribió:"), an "-----Original Message-----" or forwarded-message separator, an
Outlook header block ("From: ..." then "Sent: ..." / "Von:" then "Gesendet:" / "De :" then
"Envoyé :" ...), and lines starting with ">".

Top-posted replies are cut at the first marker: what follows is quoted. When the body
starts with quoted text (bottom-posting, or answers between the quoted lines), the quoted
lines form ``quoted`` and every other line is new text. The signature is cut from the new
text at the last "-- " line, or at a phone's "Sent from my iPhone"-style line near its end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

_MAX_LINE = 600  # longer lines are never attributions or headers
_WROTE_WORDS = (
    "wrote", "schrieb", "a écrit", "escribió", "ha scritto", "schreef", "escreveu", "skrev",
)  # fmt: skip
_WROTE = re.compile(rf"(?i)\b(?:{'|'.join(_WROTE_WORDS)})(?!\w)")
_ASCII_WROTE = tuple(word for word in _WROTE_WORDS if word.isascii())
_LEADING_ATTRIBUTION = re.compile(r"(?i)(?:on|am|le|el|il|op|em|den)\s")
_SEPARATOR = re.compile(
    r"(?i)-{2,}\s*(?:original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|oorspronkelijk bericht|forwarded message|"
    r"weitergeleitete nachricht|message transféré|mensaje reenviado)\s*-{2,}|"
    r"begin forwarded message:"
)
_UNDERSCORES = re.compile(r"_{10,}")
_FROM = re.compile(r"(?i)\*?(?:from|von|de|da|van|från|fra)\s*:\*?\s*\S")
_SENT = re.compile(
    r"(?i)\*?(?:sent|date|gesendet|datum|envoyé|enviado|fecha|inviato|data|verzonden|"
    r"skickat|sendt)(?:\s(?:el|am|le|on|den))?\s*:"
)
# Where a marker can be: a line starting (after blanks) as one of the markers above starts,
# or holding a "wrote" word anywhere. Searching the whole text for these is much cheaper
# than trying every line; each line found is then checked in full, in order.
_LINE_START = re.compile(
    r"(?im)^[^\S\n]*(?:[>\-_*]|begin\s|(?:on|am|le|el|il|op|em|den|from|von|de|da|van|från|fra)\W)"
)
_MOBILE = re.compile(
    r"(?i)(?:sent from (?:my |mail |outlook|yahoo)|sent with |get outlook for |"
    r"von meinem .{1,40} gesendet|gesendet von (?:meinem|mein)|envoyé de mon |"
    r"enviado desde mi |enviado do meu |inviato da|verzonden (?:vanaf|met) mijn |"
    r"skickat från min ).{0,60}"
)


def split_reply(text: str) -> dict[str, Any]:
    """``{new_text, quoted, signature}``; quoted and signature are None when absent."""
    lines = text.split("\n")
    marker = _first_marker(lines, text)
    new, quoted = lines, list[str]()
    if marker is not None:
        at, kind = marker
        top_posted = any(line.strip() for line in lines[:at])
        if kind == "cut" or (kind == "attribution" and top_posted):
            new, quoted = lines[:at], lines[at:]
        else:
            new, quoted = _interleaved(lines, at)
    new, signature = _signature(new)
    return {
        "new_text": _joined(new) or "",
        "quoted": _joined(quoted),
        "signature": _joined(signature),
    }


def _first_marker(lines: list[str], text: str) -> tuple[int, str] | None:
    """Where the history starts, and how: "cut" (all that follows is history),
    "attribution" or "quote" (a line starting with ">"). ``lines`` is ``text`` split."""
    for at in _candidates(text):
        line = lines[at].strip()
        if not line or len(line) > _MAX_LINE:
            continue
        if line.startswith(">"):
            return at, "quote"
        if _SEPARATOR.fullmatch(line) or _outlook_header(lines, at):
            return at, "cut"
        if _UNDERSCORES.fullmatch(line) and _outlook_header(lines, _next(lines, at)):
            return at, "cut"
        if _attribution(lines, at):
            return at, "attribution"
    return None


def _candidates(text: str) -> Iterator[int]:
    """The numbers of the lines of ``text`` that may hold a marker, in order."""
    found = [match.start() for match in _LINE_START.finditer(text)]
    if _may_hold_wrote(text):
        found = sorted(found + [match.start() for match in _WROTE.finditer(text)])
    line, seen, last = 0, 0, -1
    for position in found:
        line += text.count("\n", seen, position)
        seen = position
        if line != last:
            last = line
            yield line


def _may_hold_wrote(text: str) -> bool:
    """False only when no "wrote" word can match: in ASCII text, case-insensitive matching
    is plain lower-casing, and the words with accents cannot occur."""
    if not text.isascii():
        return True
    lowered = text.lower()
    return any(word in lowered for word in _ASCII_WROTE)


def _attribution(lines: list[str], at: int) -> bool:
    """An "On ... wrote:" line, possibly wrapped over three lines; a bare "X wrote:" line
    counts only when quoted lines follow it."""
    window = lines[at : at + 3]
    if not any(line.rstrip().endswith(":") for line in window):
        return False  # cheap: every attribution ends with ":" on one of these lines
    if not _LEADING_ATTRIBUTION.match(lines[at].lstrip()) and not _WROTE.search(lines[at]):
        return False
    joined = ""
    for offset in range(min(3, len(lines) - at)):
        joined = f"{joined} {lines[at + offset].strip()}".strip()
        if len(joined) > _MAX_LINE or not joined:
            return False
        if _is_attribution(joined):
            return bool(_LEADING_ATTRIBUTION.match(joined)) or _quoted_next(lines, at + offset)
    return False


def _is_attribution(text: str) -> bool:
    """Text ending in ":" whose "wrote" (in some language) comes near that end."""
    if not text.endswith(":"):
        return False
    found = [match.end() for match in _WROTE.finditer(text)]
    return bool(found) and len(text) - found[-1] <= 200


def _outlook_header(lines: list[str], at: int) -> bool:
    """A "From: ..." line followed within five lines by a "Sent: ..." or "Date: ..." line."""
    if at >= len(lines) or not _FROM.match(lines[at].strip()):
        return False
    return any(_SENT.match(line.strip()) for line in lines[at + 1 : at + 6])


def _next(lines: list[str], at: int) -> int:
    """The index of the next non-blank line after ``at`` (len(lines) if none)."""
    return next((i for i in range(at + 1, len(lines)) if lines[i].strip()), len(lines))


def _quoted_next(lines: list[str], at: int) -> bool:
    following = _next(lines, at)
    return following < len(lines) and lines[following].lstrip().startswith(">")


def _interleaved(lines: list[str], at: int) -> tuple[list[str], list[str]]:
    """New text before ``at`` and between the quotes; quotes and their attributions apart."""
    new, quoted = lines[:at], list[str]()
    for index in range(at, len(lines)):
        line = lines[index]
        is_quote = line.lstrip().startswith(">") or _attribution(lines, index)
        (quoted if is_quote else new).append(line)
    return new, quoted


def _signature(lines: list[str]) -> tuple[list[str], list[str]]:
    """Cut at the last "-- " delimiter (dropped), or at a phone signature near the end."""
    for at in range(len(lines) - 1, -1, -1):
        if lines[at].rstrip("\r") in ("-- ", "--"):
            return lines[:at], lines[at + 1 :]
    filled = [i for i, line in enumerate(lines) if line.strip()][-3:]
    for at in filled:
        if _MOBILE.fullmatch(lines[at].strip()):
            return lines[:at], lines[at:]
    return lines, []


def _joined(lines: list[str]) -> str | None:
    """Lines as one text, without blank lines around it; None when nothing is left."""
    return "\n".join(lines).strip("\n") or None

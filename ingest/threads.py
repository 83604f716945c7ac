"""Threading fields: message ids, the subject without reply/forward prefixes, a ticket ref.

Message ids lose their angle brackets, as JMAP (RFC 8621) reports them.

``thread_subject`` strips, repeatedly and in any case, the prefixes mailers put before a
subject: ``Re:``, ``Fwd:``, ``Fw:`` (English), ``AW:``, ``WG:``, ``Antw:`` (German), ``SV:``,
``VS:`` (Nordic), ``TR:`` (French), ``RV:``, ``RE:`` with counts (``Re[2]:``, ``RE(3):``,
``Re^2:``), ``Odp:`` (Polish), ``YNT:`` (Turkish) and the CJK ``回复:``/``答复:``/``转发:``, with
either colon; white space is collapsed.

``ticket_ref`` applies an account's ticket pattern (``\\[#(\\d+)\\]``): the first capture group
of the first match in the subject, else in the body text (the first ``MAX_BODY_SCAN``
characters only). A pattern that does not compile is a defect, not an error.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_BODY_SCAN = 64 * 1024
MAX_PATTERN_CHARS = 1000

_PREFIX = re.compile(
    r"(?i)\s*(?:re|fwd?|aw|wg|sv|vs|antw|antwort|tr|rv|odp|ynt|回复|回覆|答复|转发|轉寄)"
    r"\s*(?:\[\d+\]|\(\d+\)|\^\d+)?\s*[:\uff1a]"
)
_SPACE = re.compile(r"\s+")
_ID = r"[^<>\s\x00-\x1f\x7f]+"
_MSG_ID = re.compile(f"<({_ID})>")
_BARE_ID = re.compile(_ID)


def message_ids(values: list[str]) -> list[str]:
    """The ``<id>`` tokens of some header values, in order, without their angle brackets."""
    return [found for value in values for found in _MSG_ID.findall(value)]


def message_id(value: str | None, defects: set[str]) -> str | None:
    """The Message-ID; a bare (bracketless) one is kept if it is one token, with a defect."""
    if value is None:
        return None
    ids = message_ids([value])
    if ids:
        return ids[0]
    defects.add("invalid-message-id")
    bare = value.strip()
    return bare if _BARE_ID.fullmatch(bare) else None


def thread_subject(subject: str | None) -> str | None:
    """The subject without reply and forward prefixes, white space collapsed."""
    if subject is None:
        return None
    position = 0
    while (prefix := _PREFIX.match(subject, position)) is not None:
        position = prefix.end()
    return _SPACE.sub(" ", subject[position:]).strip()


def ticket_ref(
    pattern: str | None, subject: str | None, body: str | None, defects: set[str]
) -> str | None:
    """The first capture group (or the whole match) of ``pattern`` in the subject, else body."""
    if not pattern:
        return None
    compiled = _compiled(pattern)
    if compiled is None:
        defects.add("invalid-ticket-pattern")
        return None
    for text in (subject, (body or "")[:MAX_BODY_SCAN]):
        found = compiled.search(text or "")
        if found is not None:
            value = found.group(1) if compiled.groups else found.group()
            if value:
                return value
    return None


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    """The compiled pattern, or None when it is too long or not a valid regular expression."""
    if len(pattern) > MAX_PATTERN_CHARS:
        return None
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None

"""Summarise a text/calendar invitation: method, organiser, start, end, summary, location.

Parsed with ``icalendar`` (RFC 5545, including VTIMEZONE blocks and Outlook's Windows zone
names). Times with a zone are given in UTC (``2024-01-15T09:00:00Z``), floating times
without one (``2024-01-15T10:00:00``), all-day dates as ``2024-01-15``. The top-level fields
describe the first VEVENT (as before); ``events`` lists every VEVENT (at most
``MAX_EVENTS``; ``event_count`` says how many there were), each with its own organiser,
times, summary, location, UID, recurrence rule (as written), RECURRENCE-ID and the TZID its
start was given in. Recurrences are described, never expanded. A zone the library cannot
resolve leaves that event's time as written, without offset (``calendar-timezone`` defect).
Calendars over ``MAX_CALENDAR_BYTES`` are not parsed (the library is linear but slow: about
a second per megabyte), and a calendar it cannot read gives None with the
``invalid-calendar`` defect; nothing raises.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from ingest.addresses import is_valid_address
from ingest.headers import clean_text, decode_bytes

MAX_CALENDAR_BYTES = 512 * 1024
MAX_TEXT_CHARS = 1000
MAX_EVENTS = 100


def summarise(data: bytes, charset: str | None, defects: set[str]) -> dict[str, Any] | None:
    """The summary of the first event in an iCalendar object, or None (noted) if unreadable."""
    if len(data) > MAX_CALENDAR_BYTES:
        defects.add("calendar-too-large")
        return None
    text = decode_bytes(data, charset or "utf-8", defects)
    try:
        return _summary(text, defects)
    except Exception:  # noqa: BLE001 - icalendar raises many types on bad input; a bad invite is data
        defects.add("invalid-calendar")
        return None


def _summary(text: str, defects: set[str]) -> dict[str, Any]:
    from icalendar import Calendar  # noqa: PLC0415 - imported on first use: it loads slowly

    calendar = Calendar.from_ical(text, multiple=True)[0]
    events = calendar.walk("VEVENT")
    summaries = [_event(event, defects) for event in events[:MAX_EVENTS]]
    first = summaries[0] if summaries else _event(calendar, defects)
    return {
        "method": _text(calendar.get("METHOD"), defects).upper() or None,
        **{key: first[key] for key in ("organizer", "start", "end", "summary", "location")},
        "event_count": len(events),
        "events": summaries,
    }


def _event(event: Any, defects: set[str]) -> dict[str, Any]:
    """One VEVENT (or the calendar itself when it has none); a bad property gives None."""
    found: dict[str, Any] = {}
    for key, read in _EVENT_FIELDS:
        try:
            found[key] = read(event, defects)
        except Exception:  # noqa: BLE001 - one bad property spoils only itself
            defects.add("invalid-calendar-property")
            found[key] = None
    return found


def _start(event: Any, defects: set[str]) -> str | None:
    return _time(_first(event.get("DTSTART")), defects)


def _end(event: Any, defects: set[str]) -> str | None:
    end = _time(_first(event.get("DTEND")), defects)
    duration = _first(event.get("DURATION"))
    if end is None and duration is not None:
        end = _time(_shifted(_first(event.get("DTSTART")), duration), defects)
    return end


def _rrule(event: Any, defects: set[str]) -> str | None:
    value = _first(event.get("RRULE"))
    if value is None:
        return None
    written = value.to_ical() if hasattr(value, "to_ical") else str(value)
    if isinstance(written, bytes):
        written = written.decode("utf-8", "replace")
    return clean_text(str(written)[:MAX_TEXT_CHARS], defects) or None


def _timezone(event: Any, defects: set[str]) -> str | None:
    start = _first(event.get("DTSTART"))
    params = getattr(start, "params", None) or {}
    return _text(params.get("TZID"), defects) or None


_EVENT_FIELDS: tuple[tuple[str, Any], ...] = (
    ("organizer", lambda e, d: _organizer(_first(e.get("ORGANIZER")), d)),
    ("start", _start),
    ("end", _end),
    ("summary", lambda e, d: _text(e.get("SUMMARY"), d) or None),
    ("location", lambda e, d: _text(e.get("LOCATION"), d) or None),
    ("uid", lambda e, d: _text(e.get("UID"), d) or None),
    ("status", lambda e, d: _text(e.get("STATUS"), d).upper() or None),
    ("rrule", _rrule),
    ("recurrence_id", lambda e, d: _time(_first(e.get("RECURRENCE-ID")), d)),
    ("timezone", _timezone),
)


def _first(value: Any) -> Any:
    """A property's value; a property given twice (a list) counts once."""
    return value[0] if isinstance(value, list) and value else value


def _text(value: Any, defects: set[str]) -> str:
    """A text property as one clean, bounded line."""
    value = _first(value)
    if value is None:
        return ""
    return clean_text(str(value)[:MAX_TEXT_CHARS], defects).strip()


def _organizer(value: Any, defects: set[str]) -> dict[str, str] | None:
    """``{name, address}`` from ``ORGANIZER;CN=name:mailto:address``; None if not an address."""
    if value is None:
        return None
    address = str(value).strip()
    if address[:7].lower() == "mailto:":
        address = address[7:]
    if not is_valid_address(address):
        return None
    params = getattr(value, "params", {})
    return {"name": _text(params.get("CN", ""), defects).strip('"'), "address": address}


def _time(value: Any, defects: set[str]) -> str | None:
    """A DTSTART/DTEND value as ISO 8601: UTC when zoned, as written when floating."""
    moment = getattr(value, "dt", value)
    if isinstance(moment, datetime):
        try:
            if moment.tzinfo is None or moment.utcoffset() is None:
                return moment.isoformat(timespec="seconds")
            utc = moment.astimezone(UTC)
        except (ValueError, OverflowError, TypeError, LookupError):
            defects.add("calendar-timezone")
            return moment.replace(tzinfo=None).isoformat(timespec="seconds")
        return utc.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    if isinstance(moment, date):
        return moment.isoformat()
    return None


def _shifted(start: Any, duration: Any) -> Any:
    """DTSTART plus DURATION, for events that give a duration instead of an end."""
    delta = getattr(duration, "dt", duration)
    moment = getattr(start, "dt", start)
    if isinstance(delta, timedelta) and isinstance(moment, date):
        return moment + delta
    return None

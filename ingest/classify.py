"""Classify a message for automation: auto-reply, bounce, mailing list, authentication verdicts.

These flags let a help desk avoid auto-responder loops: never answer an auto-reply, a
bounce or list mail. Rules:

- ``auto_reply``: RFC 3834 ``Auto-Submitted`` other than ``no``; ``X-Autoreply``,
  ``X-Autorespond``, ``X-Auto-Response-Suppress``; ``Precedence: bulk | junk | auto_reply``;
  or a subject that starts like an out-of-office notice ("Out of Office", "Automatic reply",
  "Abwesenheitsnotiz", "Réponse automatique", ...). ``auto_reply_reason`` names the first
  rule that matched.
- ``bounce``: a ``multipart/report; report-type=delivery-status`` (RFC 3464) is read for the
  first failed recipient's action, status and diagnostic, and all failed recipients
  (``source: "dsn"``); without one, mail from MAILER-DAEMON or postmaster with a
  non-delivery subject, or with ``X-Failed-Recipients``, is a bounce too (``"heuristic"``).
- ``mailing_list``: ``List-Id``, ``List-Unsubscribe``, ``List-Post`` or ``Precedence: list``.
- ``authentication``: the spf, dkim and dmarc results of the topmost
  ``Authentication-Results`` (RFC 8601), the one the receiving server added. It only means
  something when that server removes forged copies; dkim is ``pass`` if any signature passed.
"""

from __future__ import annotations

import re
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

from ingest.addresses import is_valid_address
from ingest.bodies import children
from ingest.headers import clean_text, decode_bytes

Headers = list[tuple[str, str]]
MAX_TEXT_CHARS = 1000

_OUT_OF_OFFICE = re.compile(
    r"(?i)\s*(?:out of (?:the )?office|automatic reply|auto[- ]?reply|autoreply|"
    r"abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|absence du bureau|"
    r"respuesta autom[áa]tica|fuera de la oficina|risposta automatica|automatisch antwoord|"
    r"afwezigheidsbericht|frånvaro|automatisk svar)\b"
)
_BOUNCE_SUBJECT = re.compile(
    r"(?i)undeliver|delivery (?:status notification|failure|has failed|failed)|returned mail|"
    r"failure notice|mail delivery (?:failed|system)|nicht zustellbar|unzustellbar|"
    r"non remis|non distribuable|no se puede entregar|no entregado"
)
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon"})
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"\s*([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9_-]+)")
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_URI = re.compile(r"<([^<>\s]+)>")
_BRACKETED = re.compile(r"<([^<>]+)>")
_REPORTS = frozenset({"delivery-status", "global-delivery-status", ""})  # "": not given
_STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})


def classify(
    message: Message, headers: Headers, subject: str | None, senders: list[str], defects: set[str]
) -> dict[str, Any]:
    """The ``classification`` object of a document."""
    reason = _auto_reply_reason(headers, subject or "")
    return {
        "auto_reply": reason is not None,
        "auto_reply_reason": reason,
        "bounce": _bounce(message, headers, subject or "", senders, defects),
        "mailing_list": _mailing_list(headers, defects),
        "authentication": _authentication(headers, defects),
        "suspicious_display_name": "display-name-address" in defects,
    }


def _auto_reply_reason(headers: Headers, subject: str) -> str | None:
    submitted = _token(_first(headers, "auto-submitted"))
    if submitted and submitted != "no":
        return f"auto-submitted: {submitted}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        if _token(_first(headers, name)) not in ("", "no", "none", "false"):
            return name
    precedence = _token(_first(headers, "precedence"))
    if precedence in ("bulk", "junk", "auto_reply", "auto-reply"):
        return f"precedence: {precedence}"
    return "subject" if _OUT_OF_OFFICE.match(subject) else None


def _bounce(
    message: Message, headers: Headers, subject: str, senders: list[str], defects: set[str]
) -> dict[str, Any] | None:
    report = message.get_content_type() == "multipart/report"
    if report and _report_type(message) in _REPORTS:
        for part in children(message):
            if part.get_content_type() in _STATUS_PARTS:
                return _delivery_status(_status_text(part, defects), defects)
    failed = _addresses(_first(headers, "x-failed-recipients") or "")
    from_daemon = any(sender.partition("@")[0].lower() in _DAEMONS for sender in senders)
    if failed or (from_daemon and _BOUNCE_SUBJECT.search(subject)):
        return _report("heuristic", None, None, None, failed)
    return None


def _report_type(message: Message) -> str:
    """The report-type parameter, lowercase; "" when absent or unreadable (hostile RFC 2231)."""
    try:
        value = collapse_rfc2231_value(message.get_param("report-type", ""))
    except (LookupError, UnicodeError, ValueError, TypeError):
        return "unreadable"
    return str(value).strip().lower()


def _status_text(part: Message, defects: set[str]) -> str:
    """A delivery-status part as text: its header blocks, one blank line between them."""
    if part.is_multipart():
        blocks = ("\n".join(f"{k}: {v}" for k, v in block.raw_items()) for block in children(part))
        return "\n\n".join(blocks)
    data = part.get_payload(decode=True)
    return decode_bytes(data if isinstance(data, bytes) else b"", "utf-8", defects)


def _delivery_status(text: str, defects: set[str]) -> dict[str, Any]:
    """Read the per-recipient blocks of an RFC 3464 report."""
    recipients = [fields for fields in map(_fields, text.split("\n\n")) if "action" in fields]
    failed = [fields for fields in recipients if _token(fields["action"]) == "failed"]
    chosen = (failed or recipients or [{}])[0]
    status = _STATUS.search(chosen.get("status", ""))
    return _report(
        "dsn",
        _token(chosen.get("action")) or None,
        status.group() if status else None,
        _clean(chosen.get("diagnostic-code"), defects),
        [a for fields in failed for a in _addresses(fields.get("final-recipient", ""))],
    )


def _report(
    source: str, action: str | None, status: str | None, diagnostic: str | None, failed: list[str]
) -> dict[str, Any]:
    return {
        "source": source,
        "action": action,
        "status": status,
        "diagnostic": diagnostic,
        "failed_recipients": failed,
    }


def _fields(block: str) -> dict[str, str]:
    """``name: value`` lines of one header block (continuation lines unfolded), by lower name."""
    fields: dict[str, str] = {}
    name = ""
    for line in block.strip("\n").split("\n"):
        if line[:1] in (" ", "\t") and name:
            fields[name] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            fields.setdefault(name, value.strip())
    return fields


def _addresses(value: str) -> list[str]:
    """Valid addresses in ``rfc822; a@b`` or ``a@b, <c@d>`` form."""
    value = value.rpartition(";")[2] if ";" in value else value
    found = (piece.strip().strip("<>").strip() for piece in value.split(","))
    return [address for address in found if is_valid_address(address)]


def _mailing_list(headers: Headers, defects: set[str]) -> dict[str, Any] | None:
    list_id = _first(headers, "list-id")
    unsubscribe = _first(headers, "list-unsubscribe")
    listed = _first(headers, "list-post") is not None or _token(_first(headers, "precedence")) in (
        "list",
    )
    if list_id is None and unsubscribe is None and not listed:
        return None
    identity = None
    if list_id is not None:
        ids = _BRACKETED.findall(list_id)
        identity = _clean(ids[-1] if ids else list_id, defects)
    links = [clean_text(uri, defects) for uri in _URI.findall(unsubscribe or "")]
    return {"id": identity, "unsubscribe": links}


def _authentication(headers: Headers, defects: set[str]) -> dict[str, Any] | None:
    value = _first(headers, "authentication-results")
    if value is None:
        return None
    for _ in range(5):  # nested comments: one level per pass
        value = _COMMENT.sub(" ", value)
    verdicts: dict[str, Any] = {"authserv_id": None, "spf": None, "dkim": None, "dmarc": None}
    for index, piece in enumerate(value.split(";")):
        result = _RESULT.match(piece)
        if result is None:
            if index == 0 and piece.split():
                verdicts["authserv_id"] = _clean(piece.split()[0], defects)
            continue
        method, verdict = result.group(1).lower(), result.group(2).lower()
        known = method in ("spf", "dkim", "dmarc")
        if known and (verdicts[method] is None or (method == "dkim" and verdict == "pass")):
            verdicts[method] = verdict
    return verdicts


def _first(headers: Headers, name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _token(value: str | None) -> str:
    """The first word of a field, lowercase ("auto-replied" of "auto-replied; x=y")."""
    words = (value or "").replace(";", " ").split()
    return words[0].lower() if words else ""


def _clean(value: str | None, defects: set[str]) -> str | None:
    if not value:
        return None
    return clean_text(value[:MAX_TEXT_CHARS], defects).strip() or None

"""POP3 authentication: USER/PASS, APOP, SASL PLAIN (RFC 5034) and XOAUTH2 (both forms).

Every method refuses, before anything is sent, credentials containing CR, LF or NUL, and
credentials over an unencrypted connection unless the account allows plaintext.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ingest.errors import AuthError, ProtocolError, SecurityError

if TYPE_CHECKING:
    from ingest.pop3 import Pop3Session

_APOP_STAMP = re.compile(rb"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who logs in and how; ``secret`` (password or access token) never shows in a repr."""

    method: str  # password | apop | sasl_plain | xoauth2
    username: str
    secret: str = field(repr=False)
    xoauth2_style: str = "two_step"  # two_step (Microsoft 365) | one_line (Gmail)


def authenticate(session: Pop3Session, creds: Credentials) -> None:
    if any(c in value for value in (creds.username, creds.secret) for c in "\r\n\0"):
        raise SecurityError("username or secret contains CR, LF or NUL; nothing was sent")
    if not session.encrypted and not session.endpoint.allow_plaintext:
        raise SecurityError(
            "refusing to send credentials over an unencrypted connection "
            "(set allow_plaintext: true to allow it)"
        )
    {"password": _user_pass, "apop": _apop, "sasl_plain": _sasl_plain, "xoauth2": _xoauth2}[
        creds.method
    ](session, creds)


def _user_pass(session: Pop3Session, creds: Credentials) -> None:
    """USER, then PASS once USER is accepted: lock-step even where the server announces
    PIPELINING. Pipelined, the pair cost Dovecot's login ~40 ms instead of ~3 ms: it answers
    USER at once and PASS after the auth lookup, in a second small write that Nagle holds
    back until the first is acknowledged, and the client, with nothing to send, delays
    that ACK (40 ms on Linux). Lock-step, PASS itself carries the ACK."""
    session._expect_ok("USER", b"USER " + creds.username.encode())
    session._expect_ok("PASS", b"PASS " + creds.secret.encode())


def _apop(session: Pop3Session, creds: Credentials) -> None:
    """APOP (RFC 1939 section 7): only when configured; needs the greeting's timestamp."""
    stamp = _APOP_STAMP.search(session.greeting)
    if stamp is None:
        raise AuthError("auth: apop was configured but the server's greeting offers no APOP")
    digest = hashlib.md5(stamp.group() + creds.secret.encode(), usedforsecurity=False)
    session._expect_ok(
        "APOP", b"APOP %s %s" % (creds.username.encode(), digest.hexdigest().encode())
    )


def _sasl_plain(session: Pop3Session, creds: Credentials) -> None:
    """AUTH PLAIN with an initial response (RFC 5034, RFC 4616)."""
    blob = b"\0" + creds.username.encode() + b"\0" + creds.secret.encode()
    session._expect_ok("AUTH", b"AUTH PLAIN " + base64.b64encode(blob))


def _xoauth2(session: Pop3Session, creds: Credentials) -> None:
    """AUTH XOAUTH2, one line (Gmail) or with a ``+`` continuation (Microsoft 365)."""
    blob = base64.b64encode(
        b"user="
        + creds.username.encode()
        + b"\x01auth=Bearer "
        + creds.secret.encode()
        + b"\x01\x01"
    )
    if creds.xoauth2_style == "one_line":
        session._send(b"AUTH XOAUTH2 " + blob)
    else:
        session._send(b"AUTH XOAUTH2")
        if not session._readline().startswith(b"+"):
            raise ProtocolError("AUTH XOAUTH2: the server did not ask for the token")
        session._send(blob)
    reply = session._readline()
    if reply.startswith(b"+") and not reply.startswith(b"+OK"):
        # An error challenge (Google sends base64 JSON describing the failure): it is a
        # refusal, not a success. Answer with an empty line to end the exchange.
        detail = _challenge_text(reply[1:].strip())
        session._send(b"")
        session._readline()
        raise AuthError(f"AUTH XOAUTH2 refused: {detail}")
    if not reply.startswith(b"+OK"):
        raise AuthError(f"AUTH XOAUTH2 refused: {reply.decode('utf-8', 'replace')[:200]}")


def _challenge_text(payload: bytes) -> str:
    try:
        return base64.b64decode(payload, validate=True).decode("utf-8", "replace")[:300]
    except ValueError:
        return payload.decode("ascii", "replace")[:300]

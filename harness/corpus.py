"""The shared real-world message corpus, and what Dovecot's POP3 RETR makes of a message."""

from __future__ import annotations

import re
from pathlib import Path

CORPUS_DIR = (Path(__file__).resolve().parent.parent / ".." / "shared" / "corpus").resolve()

_BARE_LF = re.compile(rb"(?<!\r)\n")


def corpus_files() -> list[Path]:
    """Every ``.eml`` file under ``CORPUS_DIR``, sorted by path."""
    return sorted(CORPUS_DIR.rglob("*.eml"))


def as_pop3(raw: bytes) -> bytes:
    """The message body a POP3 client gets (after dot-unstuffing) when Dovecot serves ``raw``.

    Measured against Dovecot 2.3.19 serving a Maildir file that holds ``raw``:

    - every LF not preceded by CR becomes CRLF; an existing CRLF is kept, a bare CR is kept
      (so ``CR LF`` stays, ``CR CR LF`` stays, and a lone ``CR`` passes through);
    - if ``raw`` does not end in LF (an empty message included) CRLF is appended, because
      every line of a multi-line response ends in CRLF;
    - all other bytes (NUL, 8-bit) pass through unchanged.

    Dovecot does not dot-stuff the *first* line, so a message starting with ``.`` reaches a
    client truncated or corrupted; there is no well-defined answer and this raises ValueError.
    """
    if raw.startswith(b"."):
        raise ValueError("Dovecot does not dot-stuff a leading '.', RETR would be corrupt")
    out = _BARE_LF.sub(b"\r\n", raw)
    return out if out.endswith(b"\n") else out + b"\r\n"


def listed_size(raw: bytes) -> int:
    """The octet count Dovecot reports in LIST (and ``+OK n octets``) for ``raw``.

    It counts bare LFs as CRLF but not the CRLF appended to a message without a final
    newline, so it is ``len(as_pop3(raw)) - 2`` for such a message.
    """
    return len(raw) + len(_BARE_LF.findall(raw))

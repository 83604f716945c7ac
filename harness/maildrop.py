"""Deliver into a Maildir as an MDA would, for servers that serve it as stored (not Dovecot).

solid-pop3d and Courier turn every LF of a Maildir file into CRLF, a CR before it or not,
so a file holding CRLF would be served with CR CR LF; solid-pop3d also refuses a whole
mailbox (``-ERR message is damaged``) when one file does not end in LF. MDAs (procmail,
maildrop, Postfix ``virtual``) write LF line ends and a final LF, and so does this.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.system_users import SystemUsers


def maildir_file(raw: bytes) -> bytes:
    """``raw`` as an MDA writes it into a Maildir: LF line ends, a final LF."""
    text = raw.replace(b"\r\n", b"\n")
    return text if text.endswith(b"\n") else text + b"\n"


def make_maildir(maildir: Path, owner: str) -> None:
    """``maildir`` with ``new``, ``cur`` and ``tmp``, owned by the system user ``owner``."""
    for path in (maildir, maildir / "new", maildir / "cur", maildir / "tmp"):
        SystemUsers.make_owned(path, owner, directory=True)


def deliver_maildir(maildir: Path, raw: bytes, owner: str) -> None:
    """Write :func:`maildir_file` of ``raw`` into ``tmp/``, then rename it into ``new/``."""
    name = f"{time.time_ns()}.P{os.getpid()}.ingest"
    tmp = SystemUsers.make_owned(maildir / "tmp" / name, owner, mode=0o600)
    tmp.write_bytes(maildir_file(raw))
    tmp.rename(maildir / "new" / name)


def maildir_count(maildir: Path) -> int:
    """Messages in ``new/`` and ``cur/``."""
    return sum(len(list((maildir / sub).iterdir())) for sub in ("new", "cur"))

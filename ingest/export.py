"""``ingest export``: stored messages back out as mbox (mboxrd), a zip of .eml, or a Maildir.

Every message is streamed from the store and hashed on the way; an object whose bytes do
not hash to its sha256 stops the export (a corrupt object is never handed out).

- mbox: mboxrd. Each message is preceded by ``From SENDER DATE`` and followed by an empty
  line; a line starting with ``From `` after any number of ``>`` gets one more ``>``.
  Reading it back (remove the From_ line and the trailing empty line, remove one ``>``
  from lines matching ``>+From ``) gives the stored bytes. Line ends are kept as stored
  (CRLF); ``eol="lf"`` writes LF instead, the Unix convention.
- zip: ``ACCOUNT/YYYYMMDD-HHMMSS-SHA256.eml`` (``undated-`` without a Date), byte-exact.
- Maildir: written to ``tmp/``, fsynced, linked into ``new/`` (the Maildir delivery
  protocol), so Dovecot or Courier serve them over POP3/IMAP as new mail, byte-exact. A
  message whose sha256 is already in the Maildir (an earlier export) is skipped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

from ingest.errors import StorageError
from ingest.interfaces import BlobStore, Readable

_CHUNK = 1024 * 1024
_FROM_LINE = re.compile(rb"^>*From ")
_MAILDIR_SHA = re.compile(r"S([0-9a-f]{64})\.")


class Sink(Protocol):
    """Where exported messages go."""

    def add(self, row: dict[str, Any], stream: Readable) -> bool:
        """Write one message (``row`` is its index row); False when it was skipped."""

    def close(self) -> None: ...


class _Hashing:
    """Reads a stream, hashing what passes; ``check`` compares with the expected sha256."""

    def __init__(self, stream: Readable, sha256: str) -> None:
        self.stream, self.expected, self.digest = stream, sha256, hashlib.sha256()

    def chunks(self) -> Iterator[bytes]:
        while chunk := self.stream.read(_CHUNK):
            self.digest.update(chunk)
            yield chunk
        if self.digest.hexdigest() != self.expected:
            raise StorageError(f"stored object of {self.expected} is corrupt; not exported")


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines with their line end (the last one possibly without)."""
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for part in parts:
            yield part + b"\n"
    if rest:
        yield rest


def from_line(row: dict[str, Any]) -> bytes:
    """``From SENDER asctime-of-Date``: the envelope line of mbox."""
    senders = row.get("from") or []
    sender = senders[0] if senders and not re.search(r"\s", senders[0]) else "MAILER-DAEMON"
    when = _date(row) or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return f"From {sender} {when.strftime('%a %b %e %H:%M:%S %Y')}".encode()


def _date(row: dict[str, Any]) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(str(row.get("date")), "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=dt.UTC
        )
    except ValueError:
        return None


class MboxSink:
    """mboxrd, one file."""

    def __init__(self, path: Path, eol: str = "crlf") -> None:
        self.out: IO[bytes] = path.open("xb")
        self.lf = eol == "lf"

    def add(self, row: dict[str, Any], stream: Readable) -> bool:
        eol = b"\n" if self.lf else b"\r\n"
        self.out.write(from_line(row) + eol)
        last = b""
        for line in _lines(_Hashing(stream, row["sha256"]).chunks()):
            last = self._quoted(line)
            self.out.write(last)
        self.out.write(eol if last.endswith(b"\n") else eol + eol)
        return True

    def _quoted(self, line: bytes) -> bytes:
        """mboxrd: one more ``>`` before ``>*From ``; CRLF -> LF when writing LF."""
        out = b">" + line if _FROM_LINE.match(line) else line
        return out[:-2] + b"\n" if self.lf and out.endswith(b"\r\n") else out

    def close(self) -> None:
        self.out.flush()
        os.fsync(self.out.fileno())
        self.out.close()


def eml_name(row: dict[str, Any]) -> str:
    """``ACCOUNT/YYYYMMDD-HHMMSS-SHA256.eml`` (``undated-SHA256.eml`` without a Date)."""
    when = _date(row)
    stamp = when.strftime("%Y%m%d-%H%M%S") if when else "undated"
    return f"{row['account']}/{stamp}-{row['sha256']}.eml"


class ZipSink:
    """A zip of .eml files, one per message, deflated."""

    def __init__(self, path: Path) -> None:
        self.zip = zipfile.ZipFile(path, "x", compression=zipfile.ZIP_DEFLATED)
        self.names: set[str] = set()

    def add(self, row: dict[str, Any], stream: Readable) -> bool:
        name = eml_name(row)
        if name in self.names:
            return False
        self.names.add(name)
        when = _date(row)
        stamp = when.timetuple()[:6] if when and when.year >= 1980 else (1980, 1, 1, 0, 0, 0)
        info = zipfile.ZipInfo(name, date_time=stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        with self.zip.open(info, "w", force_zip64=True) as out:
            for chunk in _Hashing(stream, row["sha256"]).chunks():
                out.write(chunk)
        return True

    def close(self) -> None:
        self.zip.close()


class MaildirSink:
    """Delivery into a Maildir (created if missing): tmp/ then new/, fsynced."""

    def __init__(self, path: Path) -> None:
        self.root = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.present = {
            m.group(1)
            for sub in ("new", "cur")
            for name in os.listdir(path / sub)
            if (m := _MAILDIR_SHA.search(name))
        }
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        self.host, self.count = host, 0
        stat = (path / "new").stat()
        self.owner = (stat.st_uid, stat.st_gid) if os.geteuid() == 0 else None

    def add(self, row: dict[str, Any], stream: Readable) -> bool:
        sha = row["sha256"]
        if sha in self.present:
            return False
        self.count += 1
        now = time.time()
        name = f"{int(now)}.M{int(now % 1 * 1e6):06d}P{os.getpid()}Q{self.count}S{sha}.{self.host}"
        tmp = self.root / "tmp" / name
        try:
            _write_synced(tmp, _Hashing(stream, sha).chunks())
        except BaseException:
            tmp.unlink(missing_ok=True)  # nothing half-written is left behind
            raise
        if self.owner is not None:  # delivered as the mailbox's owner, so the server can read it
            os.chown(tmp, *self.owner)
        os.link(tmp, self.root / "new" / name)
        tmp.unlink()
        self.present.add(sha)
        return True

    def close(self) -> None:
        fd = os.open(self.root / "new", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_synced(path: Path, chunks: Iterator[bytes]) -> None:
    with path.open("xb") as out:
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def open_sink(kind: str, path: Path, eol: str = "crlf") -> Sink:
    if kind == "mbox":
        return MboxSink(path, eol)
    if kind == "zip":
        return ZipSink(path)
    return MaildirSink(path)


def export_one(store: BlobStore, sink: Sink, row: dict[str, Any]) -> bool:
    """Stream one message (by its row's ``raw_key``) into ``sink``."""
    stream = store.reader(str(row["raw_key"]))
    try:
        return sink.add(row, stream)
    finally:
        stream.close()

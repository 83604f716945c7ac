"""Export writers over the in-memory store: mboxrd quoting, names, skips, corrupt objects."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fakes import MemoryStore

from ingest.errors import StorageError
from ingest.export import MaildirSink, MboxSink, eml_name, export_one, from_line

RAW = b"Subject: x\r\n\r\nFrom me\r\n>From you\r\n>>From them\r\nFromage\r\n"
SHA = hashlib.sha256(RAW).hexdigest()
ROW = {"account": "a", "sha256": SHA, "raw_key": "k.eml", "date": "2024-02-29T08:09:10Z",
       "from": ["alice@example.com"]}  # fmt: skip


def _store(data: bytes = RAW) -> MemoryStore:
    store = MemoryStore()
    store.objects["k.eml"] = data
    return store


def test_mboxrd_quotes_every_from_line_once_more(tmp_path: Path) -> None:
    """Lines matching >*From get one more '>', other lines and the line ends are unchanged."""
    sink = MboxSink(tmp_path / "m")
    export_one(_store(), sink, ROW)
    sink.close()
    assert (tmp_path / "m").read_bytes() == (
        b"From alice@example.com Thu Feb 29 08:09:10 2024\r\nSubject: x\r\n\r\n"
        b">From me\r\n>>From you\r\n>>>From them\r\nFromage\r\n\r\n"
    )


def test_mbox_lf_mode_writes_unix_line_ends(tmp_path: Path) -> None:
    """With eol=lf every CRLF becomes LF, the From_ line and separator included."""
    sink = MboxSink(tmp_path / "m", "lf")
    export_one(_store(), sink, ROW)
    sink.close()
    assert b"\r" not in (tmp_path / "m").read_bytes()


def test_envelope_and_file_names_without_a_date_or_sender() -> None:
    """Undated mail gets the epoch in its From_ line and an 'undated' file name."""
    row = {**ROW, "date": None, "from": []}
    assert from_line(row) == b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970"
    assert eml_name(row) == f"a/undated-{SHA}.eml"
    assert eml_name(ROW) == f"a/20240229-080910-{SHA}.eml"


def test_maildir_delivers_to_new_once(tmp_path: Path) -> None:
    """A message lands in new/ under a unique name carrying its sha256, and only once."""
    sink = MaildirSink(tmp_path / "md")
    assert export_one(_store(), sink, ROW) is True
    assert export_one(_store(), MaildirSink(tmp_path / "md"), ROW) is False
    files = list((tmp_path / "md" / "new").iterdir())
    assert len(files) == 1 and files[0].read_bytes() == RAW
    assert re.search(rf"S{SHA}\.", files[0].name)
    assert list((tmp_path / "md" / "tmp").iterdir()) == []


def test_an_object_that_does_not_hash_to_its_sha_is_refused(tmp_path: Path) -> None:
    """Corrupt bytes raise StorageError and leave nothing behind in the Maildir."""
    with pytest.raises(StorageError, match="corrupt"):
        export_one(_store(RAW + b"x"), MaildirSink(tmp_path / "md"), ROW)
    assert [list((tmp_path / "md" / d).iterdir()) for d in ("tmp", "new")] == [[], []]

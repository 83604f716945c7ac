"""The local-directory store: create-only, verified, and no key outside its directory."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.errors import StorageError, TransientError
from ingest.interfaces import Put
from ingest.spool import Spool
from ingest.store import DirectoryStore


def _key(data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    return f"p/acct/raw/{sha[:2]}/{sha}.eml"


def test_put_writes_once_and_leaves_no_temp_files(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert store.put(_key(data), Spool.of(data), "message/rfc822") is Put.CREATED
    assert store.put(_key(data), Spool.of(data), "message/rfc822") is Put.EXISTED
    assert store.get(_key(data)) == data
    assert list(store.keys("p")) == [_key(data)]
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_a_large_body_is_written_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one write chunk
    store = DirectoryStore(tmp_path)
    store.put(_key(data), Spool.of(data), "message/rfc822")
    assert (tmp_path / _key(data)).read_bytes() == data


def test_a_different_existing_object_is_an_error(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    data = b"original\r\n"
    path = tmp_path / _key(data)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"tampered\r\n")
    with pytest.raises(StorageError, match="holds sha256"):
        store.put(_key(data), Spool.of(data), "message/rfc822")
    assert store.put(_key(data), Spool.of(data), "x", must_match=False) is Put.EXISTED


def test_a_directory_removed_behind_the_store_is_made_again(tmp_path: Path) -> None:
    """Directories are remembered once made; one removed since is recreated, not an error."""
    store = DirectoryStore(tmp_path)
    first, second = b"a" * 10, b"a" * 11
    store.put(_key(first), Spool.of(first), "x")
    shutil.rmtree(tmp_path / "p")
    key = _key(first).rsplit("/", 1)[0] + "/second.eml"  # the directory made for the first
    assert store.put(key, Spool.of(second), "x") is Put.CREATED
    assert (tmp_path / key).read_bytes() == second


@pytest.mark.parametrize("key", ["../outside", "p/../../outside", "/etc/passwd", "p/a/../../.."])
def test_keys_escaping_the_directory_are_refused(tmp_path: Path, key: str) -> None:
    store = DirectoryStore(tmp_path / "store")
    with pytest.raises(StorageError, match="escapes the store directory"):
        store.put(key, Spool.of(b"x"), "x")
    assert not (tmp_path / "outside").exists()


def test_replace_overwrites_atomically(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.put("p/doc.json", Spool.of(b"{}"), "application/json")
    store.replace("p/doc.json", Spool.of(b'{"v":2}'), "application/json")
    assert store.get("p/doc.json") == b'{"v":2}'
    assert not [p for p in tmp_path.rglob(".tmp-*")]


def test_what_was_written_is_read_back_against_the_digest_the_caller_gave(tmp_path: Path) -> None:
    """A digest passed to ``Spool.of`` is not taken on trust: the file read back must match."""
    data = b"attachment bytes"
    store = DirectoryStore(tmp_path)
    with pytest.raises(StorageError, match="expected"):
        store.put(_key(data), Spool.of(data, hashlib.sha256(b"other").hexdigest()), "x/y")
    right = Spool.of(data, hashlib.sha256(data).hexdigest())
    assert right.sha256 == Spool.of(data).sha256


_KILLED_MID_WRITE = """
import sys, time
from ingest.store import DirectoryStore

class Body:  # a spool stand-in whose content stops coming after the first chunk
    size, sha256 = 2000, "0" * 64
    def open(self):
        return self
    def read(self, limit):
        if not hasattr(self, "sent"):
            self.sent = True
            return b"x" * 1000
        print("written", flush=True)
        time.sleep(60)
        return b""

DirectoryStore(sys.argv[1]).put("acct/raw/00/" + "0" * 64 + ".eml", Body(), "message/rfc822")
"""


def test_a_writer_killed_mid_write_leaves_no_file_behind(tmp_path: Path) -> None:
    """A process killed while writing an object (SIGKILL, OOM) leaves neither the object
    nor a temporary file: the new file has no name until it is complete (O_TMPFILE)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MID_WRITE, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "written\n"
    finally:
        proc.kill()
        proc.wait()
    assert (tmp_path / "acct/raw/00").is_dir()
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []


def test_without_unnamed_files_a_named_temp_file_is_linked_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where O_TMPFILE is refused (a file system without it: EOPNOTSUPP), the object is
    written under a temporary name instead, linked into place and the name removed; the
    store does not ask for an unnamed file again."""
    real_open = os.open
    refused = []

    def no_tmpfile(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            refused.append(path)
            raise OSError(errno.EOPNOTSUPP, "not supported here")
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", no_tmpfile)
    store = DirectoryStore(tmp_path)
    first, second = b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n"
    for data in (first, second):
        assert store.put(_key(data), Spool.of(data), "message/rfc822") is Put.CREATED
        assert store.get(_key(data)) == data
    assert len(refused) == 1
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        _key(d).rsplit("/")[-1] for d in (first, second)
    )


def test_where_proc_cannot_name_a_file_the_store_names_its_files_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A restricted /proc that refuses to link an unnamed file (EXDEV, EPERM...) costs one
    retry with a named temp file; later objects are written named from the start."""
    real_link = os.link
    tried: list[str] = []

    def refuse_proc(src: str, dst: str, **kw: object) -> None:
        tried.append(src)
        if src.startswith("/proc/"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_link(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", refuse_proc)
    store = DirectoryStore(tmp_path)
    first, second = b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n"
    assert store.put(_key(first), Spool.of(first), "message/rfc822") is Put.CREATED
    assert store.put(_key(second), Spool.of(second), "message/rfc822") is Put.CREATED
    assert (store.get(_key(first)), store.get(_key(second))) == (first, second)
    assert [src.startswith("/proc/") for src in tried] == [True, False, False]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        _key(d).rsplit("/")[-1] for d in (first, second)
    )


def test_a_write_error_on_linking_an_unnamed_file_is_an_error_not_a_refused_proc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk when the unnamed file is linked fails that put (a transient error, to be
    retried), and leaves nothing behind; it is not taken for a /proc that cannot name files,
    so the next put still writes an unnamed file."""
    real_link = os.link
    tried: list[str] = []

    def disk_full_once(src: str, dst: str, **kw: object) -> None:
        tried.append(src)
        if len(tried) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_link(src, dst, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", disk_full_once)
    store = DirectoryStore(tmp_path)
    first, second = b"Subject: 1\r\n\r\none\r\n", b"Subject: 2\r\n\r\ntwo\r\n"
    with pytest.raises(TransientError, match="No space left"):
        store.put(_key(first), Spool.of(first), "message/rfc822")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert store.put(_key(second), Spool.of(second), "message/rfc822") is Put.CREATED
    assert [src.startswith("/proc/") for src in tried] == [True, True]


class _SyncLog:
    """Records, in order, each directory made and each directory or file fsynced (by path;
    unnamed files show as ``/path/#inode (deleted)``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_mkdir, real_fsync = os.mkdir, os.fsync

        def mkdir(path: str, mode: int = 0o777, **kw: object) -> None:
            real_mkdir(path, mode, **kw)  # type: ignore[arg-type]
            self.events.append(("mkdir", str(path)))

        def fsync(fd: int) -> None:
            real_fsync(fd)
            path = os.readlink(f"/proc/self/fd/{fd}")
            self.events.append(("fsync" if os.path.isdir(path) else "fsync-file", path))

        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "fsync", fsync)

    def synced_after(self, index: int) -> set[str]:
        return {path for kind, path in self.events[index + 1 :] if kind == "fsync"}


def test_every_directory_the_store_makes_is_synced_into_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new directory's name is in its parent: before put returns, the parent of each
    directory made (down from a store root that did not exist yet) has been fsynced after
    the mkdir, so a power cut cannot take a fresh raw/ab/ and the objects in it."""
    log = _SyncLog(monkeypatch)
    store = DirectoryStore(tmp_path / "new" / "store")
    data = b"Subject: x\r\n\r\nbody\r\n"
    assert store.put(_key(data), Spool.of(data), "message/rfc822") is Put.CREATED
    made = [(i, path) for i, (kind, path) in enumerate(log.events) if kind == "mkdir"]
    expected = ["new", "new/store", "new/store/p", "new/store/p/acct", "new/store/p/acct/raw"]
    expected.append(os.path.dirname(os.path.join("new/store", _key(data))))
    assert [os.path.relpath(path, tmp_path) for _, path in made] == expected
    for i, path in made:
        assert os.path.dirname(path) in log.synced_after(i), path


def test_directories_another_writer_made_are_synced_into_their_parent_on_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread or process may have made raw/ab/ a moment ago and not synced it into
    raw/ yet: the first put of this store below it fsyncs each parent inside the store
    once (not the store root's own parent: that is the operator's), and later puts
    there fsync no directory but the object's own."""
    first, second = b"Subject: 1\r\n\r\none\r\n", b"Subject: 1\r\n\r\none \r\n"
    directory = tmp_path / os.path.dirname(_key(first))
    directory.mkdir(parents=True)  # as another writer left it
    log = _SyncLog(monkeypatch)
    store = DirectoryStore(tmp_path)
    store.put(_key(first), Spool.of(first), "message/rfc822")
    synced = [os.path.relpath(p, tmp_path) for kind, p in log.events if kind == "fsync"]
    inside = [".", "p", "p/acct", "p/acct/raw", str(directory.relative_to(tmp_path))]
    assert sorted(synced) == sorted(inside)
    log.events.clear()
    key = f"{os.path.dirname(_key(first))}/other.eml"
    store.put(key, Spool.of(second), "message/rfc822")
    synced = [os.path.relpath(p, tmp_path) for kind, p in log.events if kind == "fsync"]
    assert synced == [os.path.dirname(key)]


@pytest.mark.parametrize("must_match", [True, False])
def test_an_object_already_there_is_made_durable_before_it_counts_as_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, must_match: bool
) -> None:
    """A writer that died between linking an object and fsyncing its directory leaves a
    name that a power cut could still take. A put that finds the object there (a retry)
    fsyncs the file and the directory naming it before it returns ``EXISTED``."""
    data = b"Subject: x\r\n\r\nbody\r\n"
    path = tmp_path / _key(data)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)  # as the dead writer left it
    store = DirectoryStore(tmp_path)
    log = _SyncLog(monkeypatch)
    assert store.put(_key(data), Spool.of(data), "x", must_match=must_match) is Put.EXISTED
    assert ("fsync-file", str(path)) in log.events
    assert ("fsync", str(path.parent)) in log.events


@pytest.mark.parametrize("must_match", [True, False])
def test_an_object_already_there_is_read_back_only_when_it_must_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, must_match: bool
) -> None:
    """A retried put of a raw message (``must_match``) reads the object back and compares
    its hash; a retried JSON document or index row (whose bytes may legitimately differ
    between runs) is only made durable, not read."""
    data = b"Subject: x\r\n\r\nbody\r\n"
    path = tmp_path / _key(data)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    store = DirectoryStore(tmp_path)
    reads: list[int] = []
    real_pread = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(fd)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    assert store.put(_key(data), Spool.of(data), "x", must_match=must_match) is Put.EXISTED
    assert bool(reads) is must_match

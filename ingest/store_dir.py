"""The directory blob store: objects as files below a local directory.

Writes are create-only to content-derived keys. ``put`` returns once the object is
durably stored *and* verified against the sha256 we computed: write a new file (unnamed,
``O_TMPFILE``, where the file system allows it; else under a ``.tmp-`` name), fsync,
hard-link into place (fails if the name exists, so it is create-only too), fsync the
directory, then re-read and hash it (through the descriptor it was written with: the inode
the new name links to).

It imports no botocore or boto3: a poll into a directory store does not pay for them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

from ingest.errors import StorageError, TransientError
from ingest.interfaces import Put, Readable
from ingest.metrics import storage_timed
from ingest.spool import Spool

_CHUNK = 1024 * 1024


class DirectoryStore:
    """Objects as files below a directory; the embedded default for laptops and demos.

    The write path is kept to a few system calls per object (each one lets another store
    thread take the GIL): keys are checked lexically instead of resolved component by
    component, and directories already made are remembered.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._base = os.path.realpath(root)
        self._made: set[str] = set()  # directories known to exist
        self._unnamed = bool(_O_TMPFILE)  # False once an unnamed file was refused here

    def describe(self) -> str:
        return f"file://{self.root}"

    def _file(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self._base, key))
        if not path.startswith(self._base + os.sep):
            raise StorageError(f"key {key!r} escapes the store directory")
        return path

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _make_parent(self, path: str) -> str:
        parent = os.path.dirname(path)
        if parent not in self._made:
            self._make_dirs(parent)
        return parent

    def _make_dirs(self, directory: str) -> None:
        """Make ``directory`` and its missing ancestors, each entry on the way durable.

        A new directory's name lives in its parent, and fsyncing a file and the directory
        it is linked into does not make that name durable: on ext4 without a journal, ext2
        or vfat a power cut can lose a fresh ``raw/ab/`` with every object linked into it.
        So the directory holding each one is fsynced the first time this store uses it,
        whoever made it (another thread or process may have made it a moment ago and not
        yet synced its parent). The store root and what lies above it are only synced
        where this store makes them.
        """
        chain = []
        while directory not in self._made:
            chain.append(directory)
            if directory == self._base:
                break
            directory = os.path.dirname(directory)
        for made in reversed(chain):
            _make_synced(made, root=made == self._base)
            self._made.add(made)

    @storage_timed("put")
    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        path = self._file(key)
        try:
            parent = self._make_parent(path)
            written = None if os.path.exists(path) else self._link_new(parent, path, body)
            actual = written or _settle_existing(path, parent, read_back=must_match)
            if written is None and not must_match:
                return Put.EXISTED
        except OSError as err:
            raise TransientError(f"cannot write {path}: {err}") from err
        if actual != body.sha256:
            raise StorageError(f"{path} holds sha256 {actual}, expected {body.sha256}")
        return Put.EXISTED if written is None else Put.CREATED

    def _link_new(self, parent: str, path: str, body: Spool) -> str | None:
        """Write a new file (unnamed where the system allows), fsync it, hard-link it to
        ``path`` and fsync the directory; the SHA-256 of the file as read back (the same
        inode the link names), or None if ``path`` exists."""
        named = not self._unnamed
        try:
            tmp, fd = _write_synced(parent, body, named=named)
        except FileNotFoundError:  # the directory was removed since we made it
            self._made.clear()
            self._make_parent(path)
            tmp, fd = _write_synced(parent, body, named=named)
        if tmp is not None and not named:  # the file system refused an unnamed file
            self._unnamed = False
        dir_fd = -1
        try:
            try:
                dir_fd = os.open(parent, os.O_RDONLY | _CLOEXEC)
                linked = _link(fd, tmp, os.path.basename(path), dir_fd)
            finally:
                if tmp:
                    os.unlink(tmp)
            if linked is None:  # /proc cannot name an unnamed file here: name them all
                self._unnamed = False
                return self._link_new(parent, path, body)
            if not linked:
                return None
            os.fsync(dir_fd)
            return _fd_sha256(fd)
        finally:
            os.close(fd)
            if dir_fd >= 0:
                os.close(dir_fd)

    @storage_timed("get")
    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err}") from err

    def reader(self, key: str) -> Readable:
        try:
            return self._path(key).open("rb")
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err}") from err

    @storage_timed("replace")
    def replace(self, key: str, body: Spool, content_type: str) -> None:
        """Overwrite a derived object atomically (temp file, fsync, rename), then verify."""
        path = self._file(key)
        try:
            parent = self._make_parent(path)
            tmp, fd = _write_synced(parent, body, named=True)
            assert tmp is not None  # named: renamed over the old file
            try:
                os.replace(tmp, path)
                _fsync_dir(parent)
                actual = _fd_sha256(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise TransientError(f"cannot write {path}: {err}") from err
        if actual != body.sha256:
            raise StorageError(f"{path} holds sha256 {actual}, expected {body.sha256}")

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in key order (temporary files excluded)."""
        base = self.root / prefix
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()


# An unnamed new file (Linux O_TMPFILE), linked into place once complete: a writer killed
# mid-write leaves nothing behind. It is named through /proc, so both must be there.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0) if os.path.isdir("/proc/self/fd") else 0
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# How a restricted /proc (hidepid, an LSM, another mount) refuses to link through it.
_PROC_REFUSALS = (errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOENT)


def _write_synced(parent: str, body: Spool, *, named: bool) -> tuple[str | None, int]:
    """A new file in ``parent`` holding ``body``, fsynced, and an open descriptor
    (read-write, for the read-back). Its temp path, or None when it is unnamed (only
    without ``named``, where the file system allows it)."""
    fd, tmp = -1, None
    if _O_TMPFILE and not named:
        try:
            fd = os.open(parent, _O_TMPFILE | os.O_RDWR | _CLOEXEC, 0o600)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise  # e.g. the directory is gone: the caller makes it again
    if fd < 0:
        tmp = os.path.join(parent, f".tmp-{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
    try:
        source = body.open()
        while chunk := source.read(_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        if tmp:
            os.unlink(tmp)
        raise
    return tmp, fd


def _link(fd: int, tmp: str | None, name: str, dir_fd: int) -> bool | None:
    """Give the new file ``name`` in ``dir_fd``: True, or False when the name exists. An
    unnamed file is named through ``/proc/self/fd`` (with ``dst_dir_fd``, ``os.link`` is
    ``linkat(..., AT_SYMLINK_FOLLOW)``, which follows that link to the file itself); None
    when that is refused here (a restricted ``/proc``)."""
    try:
        os.link(tmp or f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
    except FileExistsError:
        return False
    except OSError as err:
        if tmp is None and err.errno in _PROC_REFUSALS:
            return None
        raise  # e.g. ENOSPC: a write error like any other, not a reason to stop naming
    return True


def _settle_existing(path: str, parent: str, *, read_back: bool) -> str:
    """An object that is already there (a retry after a crash, the same message under
    another UIDL) counts as stored only once durable: its writer may have died between
    the link and the directory fsync. Its file and the directory naming it are fsynced
    (no I/O when they already were); its SHA-256 as read back, or "" unless ``read_back``
    (a put that need not match the body does not pay for reading the object)."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
        found = _fd_sha256(fd) if read_back else ""
    finally:
        os.close(fd)
    _fsync_dir(parent)
    return found


def _fd_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _make_synced(directory: str, *, root: bool) -> None:
    """Make ``directory`` if missing, then fsync the directory holding it. A ``root`` (the
    store root, or a missing ancestor of it) that exists is left alone: the operator's."""
    parent = os.path.dirname(directory)
    if os.path.isdir(directory):
        if root:
            return
    else:
        if root and parent != directory and not os.path.isdir(parent):
            _make_synced(parent, root=True)
        with suppress(FileExistsError):  # another writer made it just now
            os.mkdir(directory)
    _fsync_dir(parent)


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

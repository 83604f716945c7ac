"""A message's bytes as they arrive: in memory up to a threshold, then in a temp file.

SHA-256 of the whole content and SHA-256 of the body (everything after the first empty
line, CRLF CRLF) are computed while writing, so a 200 MB message is never held in memory
whole and is never read again just to be hashed. MD5 (only S3's ``Content-MD5`` needs it)
is computed on first use, from the content. Stores read it back with :meth:`open`.

:meth:`Spool.of` wraps bytes already in memory (a JSON document, an attachment): no copy,
no temp file, and its body hash, rarely wanted, is also computed on first use.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

DEFAULT_THRESHOLD = 8 * 1024 * 1024
HEAD_LIMIT = 1024 * 1024
_CHUNK = 1024 * 1024


class Spool:
    """Write once, then read as often as needed; close when done."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=threshold)  # noqa: SIM115
        self._sha256 = hashlib.sha256()
        self._body: hashlib._Hash | None = None  # started once the header block has ended
        self._md5_hex: str | None = None
        self._tail = b""  # the last 3 bytes written, to find a CRLF CRLF split across writes
        self.size = 0

    @classmethod
    def of(cls, data: bytes, sha256: str | None = None) -> Spool:
        """A spool holding ``data`` (not copied); written no further. ``sha256``: the
        digest the caller already computed (an attachment's, which names its key); a store
        still checks what it wrote against it."""
        return _Bytes(data, sha256)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)
        self._sha256.update(data)
        self._md5_hex = None
        self.size += len(data)
        if self._body is not None:
            self._body.update(data)
            return
        window = self._tail + bytes(data)
        end = window.find(b"\r\n\r\n")
        if end >= 0:
            self._body = hashlib.sha256(window[end + 4 :])
        self._tail = window[-3:]

    @property
    def body_sha256(self) -> str:
        """SHA-256 of what follows the header block (of nothing, when there is no body)."""
        return (self._body or hashlib.sha256()).hexdigest()

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def md5(self) -> str:
        """MD5 of the content, read back once on first use. The file :meth:`open` gives is
        left where it was: a caller may have opened it for an upload before asking."""
        if self._md5_hex is None:
            digest = hashlib.md5(usedforsecurity=False)
            with self._reading() as source:
                while chunk := source.read(_CHUNK):
                    digest.update(chunk)
            self._md5_hex = digest.hexdigest()
        return self._md5_hex

    @contextmanager
    def _reading(self) -> Iterator[IO[bytes]]:
        """The content from its start, for a read-back that puts the position back after."""
        position = self._file.tell()
        try:
            yield self.open()
        finally:
            self._file.seek(position)

    def open(self) -> IO[bytes]:
        """The content from its start (the same file object each time; do not close it)."""
        self._file.seek(0)
        return self._file

    def read(self) -> bytes:
        """The whole content in memory: only for messages below the parse limit."""
        return self.open().read()

    def head(self, limit: int = HEAD_LIMIT) -> bytes:
        with self._reading() as source:
            return source.read(limit)

    def close(self) -> None:
        self._file.close()


class _Bytes(Spool):
    """A spool over bytes in memory (see :meth:`Spool.of`)."""

    def __init__(self, data: bytes, sha256: str | None) -> None:  # no temp file: no super()
        self._data = bytes(data)
        self._file = io.BytesIO(self._data)  # shares the bytes until written to (never)
        self._digest = sha256 or hashlib.sha256(self._data).hexdigest()
        self._body_hex: str | None = None
        self._md5_hex = None
        self.size = len(self._data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        raise TypeError("a spool made with Spool.of is complete")

    @property
    def sha256(self) -> str:
        return self._digest

    @property
    def body_sha256(self) -> str:
        if self._body_hex is None:
            end = self._data.find(b"\r\n\r\n")
            body = memoryview(self._data)[end + 4 :] if end >= 0 else b""
            self._body_hex = hashlib.sha256(body).hexdigest()
        return self._body_hex

    @property
    def md5(self) -> str:
        if self._md5_hex is None:
            self._md5_hex = hashlib.md5(self._data, usedforsecurity=False).hexdigest()
        return self._md5_hex

    def read(self) -> bytes:
        return self._data

    def head(self, limit: int = HEAD_LIMIT) -> bytes:
        return self._data[:limit]

"""A message's bytes as they arrive: in memory up to a threshold, then in a temp file.

SHA-256 and MD5 of the whole content, and SHA-256 of the body (everything after the first
empty line, CRLF CRLF), are computed while writing, so a 200 MB message is never held in
memory whole and is never read again just to be hashed. Stores read it back with
:meth:`open`.
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import IO

DEFAULT_THRESHOLD = 8 * 1024 * 1024
HEAD_LIMIT = 1024 * 1024


class Spool:
    """Write once, then read as often as needed; close when done."""

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=threshold)  # noqa: SIM115
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._body: hashlib._Hash | None = None  # started once the header block has ended
        self._tail = b""  # the last 3 bytes written, to find a CRLF CRLF split across writes
        self.size = 0

    @classmethod
    def of(cls, data: bytes) -> Spool:
        spool = cls(threshold=max(len(data), 1))
        spool.write(data)
        return spool

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._file.write(data)
        self._sha256.update(data)
        self._md5.update(data)
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
        return self._md5.hexdigest()

    def open(self) -> IO[bytes]:
        """The content from its start (the same file object each time; do not close it)."""
        self._file.seek(0)
        return self._file

    def read(self) -> bytes:
        """The whole content in memory: only for messages below the parse limit."""
        return self.open().read()

    def head(self, limit: int = HEAD_LIMIT) -> bytes:
        return self.open().read(limit)

    def close(self) -> None:
        self._file.close()

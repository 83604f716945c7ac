"""A message's bytes as they arrive: in memory up to a threshold, then in a temp file.

SHA-256 and MD5 are computed while writing, so a 200 MB message is never held in memory
whole and is never read twice just to be hashed. Stores read it back with :meth:`open`.
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

    def sha256_from(self, offset: int) -> str:
        """SHA-256 of the content after the first ``offset`` bytes (read in chunks)."""
        digest = hashlib.sha256()
        stream = self.open()
        stream.seek(offset)
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
        return digest.hexdigest()

    def close(self) -> None:
        self._file.close()

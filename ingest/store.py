"""Opens the configured blob store: S3-compatible object storage or a local directory.

Both stores have one interface and one contract. Writes are create-only to
content-derived keys, and ``put`` returns once the object is durably stored *and* verified
against the sha256 we computed. How each store does that is in its own module:
``ingest.store_s3`` (``S3Store``) and ``ingest.store_dir`` (``DirectoryStore``).

The S3 module is imported only for an S3 store: a poll into a directory imports no botocore.
"""

from __future__ import annotations

from ingest.config import StorageConfig
from ingest.interfaces import BlobStore
from ingest.store_dir import DirectoryStore

__all__ = ["DirectoryStore", "open_store"]


def open_store(cfg: StorageConfig) -> BlobStore:
    if cfg.scheme == "file":
        return DirectoryStore(cfg.directory)
    from ingest import store_s3  # noqa: PLC0415 - botocore only for an S3 store

    return store_s3.S3Store(cfg)

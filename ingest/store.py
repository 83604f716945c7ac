"""Opens the configured blob store: S3-compatible object storage or a local directory.

Both stores have one interface and one contract. Writes are create-only to
content-derived keys, and ``put`` returns once the object is durably stored *and* verified
against the sha256 we computed. How each store does that is in its own module:
``ingest.store_s3`` (``S3Store``) and ``ingest.store_dir`` (``DirectoryStore``).
"""

from __future__ import annotations

from ingest.config import StorageConfig
from ingest.interfaces import BlobStore
from ingest.store_dir import DirectoryStore
from ingest.store_s3 import S3Store, make_s3_client

__all__ = ["DirectoryStore", "S3Store", "make_s3_client", "open_store"]


def open_store(cfg: StorageConfig) -> BlobStore:
    if cfg.scheme == "file":
        return DirectoryStore(cfg.directory)
    return S3Store(cfg)

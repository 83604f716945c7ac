"""Opens the configured blob store: S3-compatible object storage or a local directory.

Both stores have one interface and one contract. Writes are create-only to
content-derived keys, and ``put`` returns once the object is durably stored *and* verified
against the sha256 we computed. How each store does that is in its own module:
``ingest.store_s3`` (``S3Store``) and ``ingest.store_dir`` (``DirectoryStore``).

``S3Store`` and ``make_s3_client`` are still importable from here, but the S3 module is
loaded only when one of them is first used or the configured store is S3: importing this
module for a directory store imports no botocore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingest.config import StorageConfig
from ingest.interfaces import BlobStore
from ingest.store_dir import DirectoryStore

if TYPE_CHECKING:
    from ingest.store_s3 import S3Store, make_s3_client

__all__ = ["DirectoryStore", "S3Store", "make_s3_client", "open_store"]

_S3_NAMES = frozenset({"S3Store", "make_s3_client"})


def open_store(cfg: StorageConfig) -> BlobStore:
    if cfg.scheme == "file":
        return DirectoryStore(cfg.directory)
    from ingest import store_s3  # noqa: PLC0415 - botocore only for an S3 store

    return store_s3.S3Store(cfg)


def __getattr__(name: str) -> Any:
    """``S3Store`` and ``make_s3_client``, from the S3 module loaded on first use."""
    if name in _S3_NAMES:
        from ingest import store_s3  # noqa: PLC0415 - see the module docstring

        return getattr(store_s3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

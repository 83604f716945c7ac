"""One account's view of the store: its storage options applied to every object it writes."""

from __future__ import annotations

from ingest import keys
from ingest.config import Settings
from ingest.errors import ConfigError
from ingest.interfaces import AccountViews, BlobStore
from ingest.object_params import ObjectWriter


def account_store(store: BlobStore, settings: Settings, name: str) -> BlobStore:
    """``store`` writing with account ``name``'s options (same client, no new connection).

    A store that cannot apply options the account needs is refused rather than used
    without them (the config already refuses them for a directory store).
    """
    options = settings.options_for(settings.account(name))
    if isinstance(store, AccountViews):
        root = keys.raw_prefix(settings.storage.prefix, name).removesuffix("raw/")
        return store.for_account(ObjectWriter(name, root, options))
    if options.needs_s3:
        raise ConfigError(
            f"{settings.source}: accounts({name}): {', '.join(options.needs_s3)} need an S3 "
            f"store, not {store.describe()}"
        )
    return store

"""``ingest search``: find messages in the index by account, day, sender, recipient, words.

A plain scan, no database: the index rows of each account are listed, days outside the
range are pruned by their key (``day=`` partition) without being read, and the remaining
rows are read and filtered. For large archives, DuckDB or Athena over the same objects
(see the README) is faster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ingest import keys
from ingest.interfaces import BlobStore


@dataclass(frozen=True, slots=True)
class Query:
    """What to look for; every given criterion must match (``None``/empty: any)."""

    accounts: tuple[str, ...]
    since: str | None = None  # YYYY-MM-DD, inclusive (UTC day of the Date header)
    until: str | None = None  # YYYY-MM-DD, inclusive
    sender: str | None = None  # substring of a From address or name, any case
    recipient: str | None = None  # substring of a To/Cc address, any case
    words: tuple[str, ...] = ()  # each must occur in the subject, any case
    message_id: str | None = None  # exact, with or without <>
    has_attachment: bool | None = None
    limit: int | None = None

    def day_wanted(self, day: str) -> bool:
        return (self.since is None or day >= self.since) and (
            self.until is None or day <= self.until
        )

    def matches(self, row: dict[str, Any]) -> bool:
        return all(
            (
                _contains([*row.get("from", []), row.get("from_name") or ""], self.sender),
                _contains([*row.get("to", []), *row.get("cc", [])], self.recipient),
                all(w.casefold() in (row.get("subject") or "").casefold() for w in self.words),
                self.message_id is None
                or row.get("message_id") == self.message_id.strip().strip("<>"),
                self.has_attachment is None or bool(row.get("attachments")) == self.has_attachment,
            )
        )


def _contains(values: list[str], needle: str | None) -> bool:
    if needle is None:
        return True
    folded = needle.casefold()
    return any(folded in v.casefold() for v in values)


def search(store: BlobStore, prefix: str, query: Query) -> Iterator[dict[str, Any]]:
    """Matching rows, account by account, in day order (oldest first)."""
    found = 0
    for account in query.accounts:
        for key in store.keys(keys.index_prefix(prefix, account)):
            day = keys.day_of_index_key(key)
            if day is None or not key.endswith(".ndjson") or not query.day_wanted(day):
                continue
            row = json.loads(store.get(key))
            if query.matches(row):
                yield row
                found += 1
                if query.limit is not None and found >= query.limit:
                    return

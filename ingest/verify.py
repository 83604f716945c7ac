"""``ingest verify``: a fixity audit of the stored objects, their documents and the index.

Per account, in a fixed order (so a cursor can say how far a run got):

1. messages, by sha256: the raw and JSON listings are merged (both are sorted by sha).
   A raw without JSON, a JSON without raw, a message without index row are *missing*.
   Sampled messages are re-read: a raw that does not hash to its name, a JSON whose
   sha256/raw_key/account disagree, an index row that differs from the row the JSON gives
   (or lies in another day's partition), a referenced attachment not stored: *corrupt* or
   *missing*. Names that are no valid key are *orphaned*.
2. index rows left over (no raw, no JSON for their sha256): *orphaned*.
3. attachments: sampled ones are re-read and must hash to their name.

Listings are always complete; ``sample`` picks which objects are re-read, ``rate`` caps
reads per second. Progress (the cursor) and findings go to a state file, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ingest import index, keys
from ingest.errors import IngestError
from ingest.interfaces import BlobStore
from ingest.verify_state import Finding, Pacer, State, Stop

MESSAGES, ROWS, ATTACHMENTS, END = 0, 1, 2, 9  # stages, in the order a run visits them


@dataclass(frozen=True, slots=True)
class VerifyPlan:
    """What to audit and how much of it to re-read."""

    accounts: tuple[str, ...]
    prefix: str = ""
    index: bool = True  # the index is written, so every message must have its row
    sample: float = 1.0
    rng: random.Random = field(default_factory=random.Random)


@dataclass(slots=True)
class _Account:
    """One account's audit: listings held while it runs (rows by sha, attachment shas)."""

    plan: VerifyPlan
    store: BlobStore
    state: State
    pacer: Pacer
    name: str
    rows: dict[str, str] = field(default_factory=dict)
    attachments: set[str] = field(default_factory=set)

    def found(self, kind: str, what: str, key: str, detail: str) -> None:
        self.state.add(Finding(kind, what, self.name, key, detail))

    def run(self) -> None:
        self._list_rows()
        self.attachments = {
            s for k in self.store.keys(self._prefix("att")) if (s := keys.sha_of_key(k))
        }
        for sha, raw, doc in self._messages():
            row = self.rows.pop(sha, None)
            if self.state.todo((self.name, MESSAGES, sha)):
                self._message(sha, raw, doc, row)
                self.state.done((self.name, MESSAGES, sha))
        for sha, key in sorted(self.rows.items(), key=lambda item: item[1]):
            if self.state.todo((self.name, ROWS, key)):
                self.found("orphaned", "index", key, f"no raw or JSON for {sha}")
                self.state.done((self.name, ROWS, key))
        self._attachments()

    def _prefix(self, kind: str) -> str:
        return keys.account_prefix(self.plan.prefix, self.name, kind)

    def _list_rows(self) -> None:
        if not self.plan.index:
            return
        for key in self.store.keys(keys.index_prefix(self.plan.prefix, self.name)):
            sha = keys.sha_of_key(key)
            if sha is None or keys.day_of_index_key(key) is None:
                self.found("orphaned", "index", key, "not a key the archive writes")
            elif sha in self.rows:
                self.found("orphaned", "index", key, f"second row of {sha}: {self.rows[sha]}")
            else:
                self.rows[sha] = key

    def _listing(self, kind: str, suffix: str) -> Iterator[tuple[str, str]]:
        """(sha, key) in sha order; names that are no valid key are reported on the way."""
        for key in self.store.keys(self._prefix(kind)):
            sha = keys.sha_of_key(key)
            expected = sha and f"{self._prefix(kind)}{sha[:2]}/{sha}{suffix}"
            if sha is None or key != expected:
                self.found("orphaned", kind, key, "not a key the archive writes")
            else:
                yield sha, key

    def _messages(self) -> Iterator[tuple[str, str | None, str | None]]:
        """Merge the raw and JSON listings: (sha, raw key or None, JSON key or None)."""
        raws, docs = self._listing("raw", ".eml"), self._listing("json", ".json")
        raw, doc = next(raws, None), next(docs, None)
        while raw is not None or doc is not None:
            if doc is None or (raw is not None and raw[0] < doc[0]):
                assert raw is not None
                yield raw[0], raw[1], None
                raw = next(raws, None)
            elif raw is None or doc[0] < raw[0]:
                yield doc[0], None, doc[1]
                doc = next(docs, None)
            else:
                yield raw[0], raw[1], doc[1]
                raw, doc = next(raws, None), next(docs, None)

    def _message(self, sha: str, raw: str | None, doc: str | None, row: str | None) -> None:
        raw_key = keys.raw_key(self.plan.prefix, self.name, sha)
        if raw is None:
            self.found("missing", "raw", raw_key, "the JSON document names it; the message is lost")
        if doc is None:
            json_key = keys.json_key(self.plan.prefix, self.name, sha)
            self.found("missing", "json", json_key, "rebuild it with `ingest reparse`")
        if self.plan.index and row is None:
            self.found("missing", "index", sha, "rebuild it with `ingest index rebuild`")
        if self.plan.rng.random() >= self.plan.sample:
            return
        if raw is not None:
            self._hash(raw, sha, "raw")
        if doc is not None:
            self._document(sha, doc, raw_key, row)
        self.state.checked += 1

    def _hash(self, key: str, sha: str, what: str) -> None:
        self.pacer.wait()
        try:
            actual = _sha256_of(self.store, key)
        except IngestError as err:
            self.found("missing", what, key, f"listed but unreadable: {err}")
            return
        if actual != sha:
            self.found("corrupt", what, key, f"content hashes to {actual}")

    def _document(self, sha: str, key: str, raw_key: str, row: str | None) -> None:
        self.pacer.wait()
        try:
            doc = json.loads(self.store.get(key))
            wrong = [
                name
                for name, want in (("sha256", sha), ("raw_key", raw_key), ("account", self.name))
                if doc.get(name) != want
            ]
        except (IngestError, ValueError, AttributeError) as err:
            self.found("corrupt", "json", key, f"unreadable: {err}")
            return
        if wrong:
            self.found("corrupt", "json", key, f"disagrees with its key on {', '.join(wrong)}")
            return
        for att in doc.get("attachments") or []:
            if att.get("key") and att.get("sha256") not in self.attachments:
                self.found("missing", "attachment", str(att["key"]), f"named by {key}")
        if row is not None:
            self._row(row, doc)

    def _row(self, key: str, doc: dict[str, Any]) -> None:
        expected = index.row_key(doc, self.plan.prefix)
        self.pacer.wait()
        try:
            actual = self.store.get(key)
        except IngestError as err:
            self.found("missing", "index", key, f"listed but unreadable: {err}")
            return
        if key != expected:
            self.found("corrupt", "index", key, f"belongs in {expected}")
        elif actual != index.row_bytes(index.build_row(doc, self.plan.prefix)):
            self.found("corrupt", "index", key, "differs from the row its JSON document gives")

    def _attachments(self) -> None:
        for sha, key in self._listing("att", ""):
            if self.state.todo((self.name, ATTACHMENTS, sha)):
                if self.plan.rng.random() < self.plan.sample:
                    self._hash(key, sha, "attachment")
                    self.state.checked += 1
                self.state.done((self.name, ATTACHMENTS, sha))


def _sha256_of(store: BlobStore, key: str) -> str:
    digest = hashlib.sha256()
    stream = store.reader(key)
    try:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    finally:
        stream.close()
    return digest.hexdigest()


def verify(store: BlobStore, plan: VerifyPlan, state: State, pacer: Pacer) -> State:
    """Audit every account of ``plan`` from where ``state`` stopped; findings go to ``state``."""
    try:
        for name in sorted(plan.accounts):
            if state.todo((name, END, "")):
                _Account(plan, store, state, pacer, name).run()
        state.finish()
    except (KeyboardInterrupt, Stop):
        state.save()
        raise
    return state

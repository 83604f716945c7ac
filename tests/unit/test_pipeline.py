"""The poll pipeline over in-memory fakes: ordering, crash recovery and what is committed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from fakes import FakeGuard, FakeMaildrop, MemoryLedger, MemoryStore

import ingest.pipeline
from ingest import keys
from ingest.errors import LockLost, ProtocolError, StorageError, TransientError
from ingest.interfaces import Put
from ingest.model import MailboxEntry, PollPlan, State
from ingest.pipeline import poll
from ingest.spool import Spool

RAW = [
    b"Subject: one\r\nMessage-ID: <1@x>\r\n\r\nbody one\r\n",
    b"Subject: two\r\nMessage-ID: <2@x>\r\n\r\n.leading dot\r\n",
    b"Subject: three\r\n\r\nbody three\r\n",
]


def _drop(*raws: bytes) -> FakeMaildrop:
    drop = FakeMaildrop()
    for i, raw in enumerate(raws or RAW):
        drop.add(f"uid-{i}", raw)
    return drop


class World:
    def __init__(self, drop: FakeMaildrop, delete: bool = True, grace: float = 100.0) -> None:
        self.drop = drop
        self.ledger = MemoryLedger()
        self.store = MemoryStore()
        self.guard = FakeGuard()
        self.plan = PollPlan(
            account="acct", prefix="p", delete=delete, grace_seconds=grace, quarantine_after=3
        )
        self.now = 1000.0

    def poll(self, hooks=(), **faults: int):
        self.session = self.drop.session(**faults)
        return poll(
            self.plan, self.session, self.ledger, self.store, self.guard,
            clock=lambda: self.now, hooks=hooks,
        )  # fmt: skip

    def raw_objects(self) -> dict[str, bytes]:
        return {k: v for k, v in self.store.objects.items() if "/raw/" in k}


def test_delete_mode_stores_everything_then_empties_the_mailbox() -> None:
    """Each message is stored raw and as JSON, the ledger says deleted, the mailbox is empty."""
    w = World(_drop())
    report = w.poll()
    assert report.outcome == "ok" and report.stored == 3 and report.deleted == 3
    assert sorted(w.raw_objects().values()) == sorted(RAW)
    assert w.drop.messages == {}
    assert {r.state for r in w.ledger.records.values()} == {State.DELETED}
    for rec in w.ledger.records.values():
        doc = json.loads(w.store.objects[rec.json_key])
        assert doc["raw_key"] == rec.raw_key and doc["sha256"] == rec.sha256


def test_keys_are_content_derived() -> None:
    """The raw key is a pure function of prefix, account and sha256."""
    w = World(_drop(RAW[0]))
    w.poll()
    (rec,) = w.ledger.records.values()
    assert rec.raw_key == keys.raw_key("p", "acct", rec.sha256)
    assert rec.json_key == keys.json_key("p", "acct", rec.sha256)


def test_keep_mode_leaves_mail_and_second_poll_fetches_nothing() -> None:
    """With delete: never the mailbox is untouched and a second poll retrieves nothing."""
    w = World(_drop(), delete=False)
    w.poll()
    assert len(w.drop.messages) == 3
    report = w.poll()
    assert w.session.retrieved_uidls == [] and report.already_stored == 3 and report.stored == 0


def test_lost_quit_reply_is_finished_by_the_next_poll_without_refetching() -> None:
    """Stored but never committed: the next poll DELEs without RETR and stores nothing new."""
    w = World(_drop())
    with pytest.raises(TransientError):
        w.poll(fail_quit=1)
    assert len(w.drop.messages) == 3 and len(w.raw_objects()) == 3
    report = w.poll()
    assert w.session.retrieved_uidls == [] and report.deleted == 3 and w.drop.messages == {}
    assert len(w.store.objects) == 6


def test_failure_mid_retr_commits_nothing_and_resumes() -> None:
    """A broken RETR drops the session without QUIT; the next poll completes exactly once."""
    w = World(_drop())
    with pytest.raises(TransientError):
        w.poll(fail_retr_at=2)
    assert w.session.closed == "dropped" and len(w.drop.messages) == 3
    report = w.poll()
    assert w.session.retrieved_uidls == ["uid-1", "uid-2"]
    assert report.deleted == 3 and w.drop.messages == {} and len(w.raw_objects()) == 3


def test_store_failure_drops_connection_without_quit() -> None:
    """When a retrieved message cannot be stored the session is abandoned, never QUIT."""
    w = World(_drop())
    w.store.fail_puts = 1
    with pytest.raises(TransientError):
        w.poll()
    assert w.session.closed == "abandoned" and w.drop.quits == 0
    assert len(w.drop.messages) == 3 and w.ledger.records == {}


def test_wiped_ledger_creates_no_duplicate_objects() -> None:
    """Losing Redis costs a re-download, never a second object."""
    w = World(_drop(), delete=False)
    w.poll()
    before = dict(w.store.objects)
    w.ledger.records.clear()
    report = w.poll()
    assert report.stored == 0 and report.already_stored == 3
    assert w.store.objects == before


def test_lost_lock_prevents_commit() -> None:
    """A poll whose lock expired never sends QUIT, so nothing it marked is deleted."""
    w = World(_drop())
    w.guard.lost = True
    with pytest.raises(LockLost):
        w.poll()
    assert len(w.drop.messages) == 3 and w.drop.quits == 1  # RSET + QUIT, nothing removed
    assert w.session.closed == "rset+quit"


def test_fenced_ledger_write_stops_the_poll_before_dele() -> None:
    """If the ledger refuses a write (lock lost), nothing is deleted."""
    w = World(_drop())
    w.ledger.lost = True
    with pytest.raises(LockLost):
        w.poll()
    assert len(w.drop.messages) == 3


def test_duplicate_and_invalid_uidls_are_left_on_the_server() -> None:
    """Messages whose UIDL is repeated or invalid are skipped, not guessed at."""
    w = World(_drop())
    session = w.drop.session()
    session.entries[1] = MailboxEntry(2, "uid-0", session.entries[1].size)
    session.entries[2] = MailboxEntry(3, "bad uidl", session.entries[2].size)
    report = poll(w.plan, session, w.ledger, w.store, w.guard)
    assert report.listed == 0 and session.retrieved_uidls == [] and len(w.drop.messages) == 3


def test_reused_uidl_with_other_size_is_fetched_as_new() -> None:
    """A UIDL the ledger knows but with a different size is a different message."""
    w = World(_drop(RAW[0]), delete=False)
    w.poll()
    w.drop.messages["uid-0"] = RAW[1]
    report = w.poll()
    assert report.stored == 1 and len(w.raw_objects()) == 2


def test_identical_content_under_two_uidls_is_stored_once() -> None:
    """Content-derived keys mean two copies of one message make one object."""
    w = World(_drop(RAW[0], RAW[0]))
    report = w.poll()
    assert report.stored == 1 and report.already_stored == 1 and len(w.raw_objects()) == 1
    assert w.drop.messages == {}


def test_vanished_uidls_are_pruned_after_the_grace_period() -> None:
    """UIDLs gone from the server are marked, then dropped once the grace period passed."""
    w = World(_drop(), grace=50)
    w.poll()
    w.now += 10
    w.poll()
    assert all(r.gone_since == 1010.0 for r in w.ledger.records.values())
    w.now += 60
    report = w.poll()
    assert report.pruned == 3 and w.ledger.records == {}


def test_lookup_is_one_round_trip_when_nothing_vanished() -> None:
    """A poll of a kept mailbox with nothing new looks every UIDL up in one round trip
    (plus reading and leaving the unchanged-mailbox note)."""
    w = World(_drop(), delete=False)
    w.poll()
    w.ledger.note = None  # expired, say: the full path
    w.ledger.round_trips = 0
    report = w.poll()
    assert w.session.listings == 1 and w.ledger.round_trips == 3
    assert report.already_stored == 3 and w.ledger.note is not None


def test_an_unchanged_kept_mailbox_is_not_listed_or_looked_up_again() -> None:
    """Once a keep-mode poll found nothing to do, the next one with the same STAT and UIDL
    listing reads one note and ends: no LIST, no per-UIDL lookup, the same counts."""
    w = World(_drop(), delete=False)
    w.poll()
    settled = w.poll()
    w.ledger.round_trips = 0
    report = w.poll()
    assert w.session.listings == 0 and w.ledger.round_trips == 1
    assert w.session.closed == "quit" and w.session.retrieved_uidls == []
    assert (report.listed, report.already_stored, report.outcome) == (3, 3, "ok")
    assert report == settled


def test_new_mail_in_a_kept_mailbox_is_fetched_despite_the_note() -> None:
    w = World(_drop(), delete=False)
    w.poll()
    w.poll()
    w.drop.add("uid-new", b"Subject: new\r\n\r\nnew\r\n")
    report = w.poll()
    assert report.stored == 1 and w.session.retrieved_uidls == ["uid-new"]
    assert len(w.raw_objects()) == 4


def test_a_kept_poll_that_stored_leaves_a_note_counting_it_as_already_stored() -> None:
    """The poll after one that stored everything new needs no lookup either: the first poll
    of a mailbox already notes what the second would find."""
    w = World(_drop(), delete=False)
    first = w.poll()
    assert first.stored == 3 and w.ledger.note is not None
    w.ledger.round_trips = 0
    report = w.poll()
    assert w.session.listings == 0 and w.ledger.round_trips == 1
    assert (report.listed, report.already_stored, report.stored) == (3, 3, 0)
    w.drop.add("uid-new", b"Subject: new\r\n\r\nnew\r\n")
    assert w.poll().stored == 1
    report = w.poll()
    assert w.session.listings == 0 and (report.listed, report.already_stored) == (4, 4)


def test_a_kept_poll_that_failed_leaves_no_note() -> None:
    w = World(_drop(), delete=False)
    w.store.fail_puts = 1
    with pytest.raises(TransientError):
        w.poll()
    assert w.ledger.note is None
    w.poll()
    assert w.ledger.note is not None and len(w.raw_objects()) == 3


def test_any_ledger_write_voids_the_note() -> None:
    """A record written or removed since (an operator's requeue, say) means a full poll."""
    w = World(_drop(), delete=False)
    w.poll()
    w.poll()
    del w.ledger.records["uid-1"]  # lost behind the ledger's back: the size differs
    w.poll()
    assert w.session.listings == 1 and w.session.retrieved_uidls == ["uid-1"]
    w.poll()
    w.ledger.remove(["uid-2"])
    w.poll()
    assert w.session.listings == 1 and w.session.retrieved_uidls == ["uid-2"]
    assert len(w.raw_objects()) == 3


def test_a_larger_size_limit_voids_the_note() -> None:
    """A message left on the server as too large is fetched once the limit allows it."""
    w = World(_drop(b"Subject: big\r\n\r\n" + b"x" * 500 + b"\r\n"), delete=False)
    w.plan = replace(w.plan, max_message_size=100)
    w.poll()
    report = w.poll()
    assert report.oversize == 1 and w.ledger.note is not None
    w.plan = replace(w.plan, max_message_size=None)
    report = w.poll()
    assert report.stored == 1 and w.session.retrieved_uidls == ["uid-0"]


@pytest.mark.parametrize("note", ["not json", "[1, 2]", '{"fingerprint": 5}', "null"])
def test_a_note_that_is_not_ours_means_a_full_poll(note: str) -> None:
    w = World(_drop(), delete=False)
    w.poll()
    w.ledger.note = note
    report = w.poll()
    assert w.session.listings == 1 and report.already_stored == 3


def test_delete_mode_leaves_no_note() -> None:
    w = World(_drop())
    w.poll()
    w.poll()
    assert w.ledger.note is None and w.session.listings == 1


def test_parse_failure_still_stores_raw_and_a_json_saying_why() -> None:
    """A message the parser cannot handle is stored, flagged and counted."""

    def broken(raw: bytes, **kw: str) -> dict[str, object]:
        return {**kw, "parse_error": "ValueError: boom"}

    w = World(_drop(RAW[0]))
    w.session = w.drop.session()
    report = poll(w.plan, w.session, w.ledger, w.store, w.guard, parse=broken)
    assert report.parse_failures == 1 and report.stored == 1
    (rec,) = w.ledger.records.values()
    assert json.loads(w.store.objects[rec.json_key])["parse_error"] == "ValueError: boom"


def test_poison_message_is_quarantined_after_n_failures_and_the_rest_flows() -> None:
    """A message the store refuses N polls in a row is quarantined and left on the server."""
    w = World(_drop())
    w.store.refuse.add(RAW[1])
    for _ in range(2):
        with pytest.raises(StorageError):
            w.poll()
        assert w.session.closed == "abandoned"
    assert w.ledger.records["uid-1"].state is State.FAILING
    report = w.poll()
    assert report.quarantined == 1 and report.outcome == "partial"
    assert w.session.closed == "abandoned"  # a retrieved message is unstored: no QUIT
    rec = w.ledger.records["uid-1"]
    assert rec.state is State.QUARANTINED and rec.failures == 3 and "StorageError" in rec.reason
    report = w.poll()  # the quarantined message is no longer retrieved, so QUIT is safe
    assert report.outcome == "ok" and "uid-1" not in w.session.retrieved_uidls
    assert list(w.drop.messages) == ["uid-1"]


def test_failure_count_resets_after_a_success() -> None:
    """Failures must be consecutive: a stored message forgets its earlier failures."""
    w = World(_drop(RAW[0]), delete=False)
    w.store.refuse.add(RAW[0])
    with pytest.raises(StorageError):
        w.poll()
    w.store.refuse.clear()
    w.poll()
    assert w.ledger.records["uid-0"].state is State.STORED
    assert w.ledger.records["uid-0"].failures == 0


def test_identity_is_confirmed_before_deleting_a_message_stored_earlier() -> None:
    """A stored UIDL whose headers changed (reused UIDL, same size) is fetched, not DELEd blind."""
    w = World(_drop(RAW[0]))
    with pytest.raises(TransientError):
        w.poll(fail_quit=1)
    same_size = RAW[0].replace(b"<1@x>", b"<9@x>")
    w.drop.messages["uid-0"] = same_size
    report = w.poll()
    assert w.session.topped == ["uid-0"] and w.session.retrieved_uidls == ["uid-0"]
    assert report.stored == 1 and same_size in w.raw_objects().values()


def test_unchanged_message_is_deleted_after_a_header_check_only() -> None:
    """The crash-recovery DELE costs one TOP, not a second RETR."""
    w = World(_drop(RAW[0]))
    with pytest.raises(TransientError):
        w.poll(fail_quit=1)
    w.poll()
    assert w.session.topped == ["uid-0"] and w.session.retrieved_uidls == []
    assert w.drop.messages == {}


def test_refused_dele_leaves_that_stored_message_and_commits_the_rest() -> None:
    """-ERR on one DELE does not fail the poll: the others are deleted, it waits for next time."""
    w = World(_drop())
    report = w.poll(refuse_dele=2)
    assert report.outcome == "ok" and report.deleted == 2
    assert list(w.drop.messages) == ["uid-1"] and len(w.raw_objects()) == 3
    assert w.ledger.records["uid-1"].state is State.STORED


def test_retr_error_on_one_message_counts_towards_its_quarantine() -> None:
    """-ERR on RETR of one message fails polls until it is quarantined; the rest flows."""
    w = World(_drop())
    w.drop.refuse_retr.add("uid-2")
    for _ in range(2):
        with pytest.raises(ProtocolError):
            w.poll()
    report = w.poll()
    assert report.quarantined == 1 and w.ledger.records["uid-2"].state is State.QUARANTINED
    w.poll()
    assert list(w.drop.messages) == ["uid-2"] and len(w.raw_objects()) == 2


def _rewrite_headers(raw: bytes) -> bytes:
    """What GNU Mailutils does after a session: status fields added to the header."""
    return b"Status: RO\r\nX-UID: 1\r\n" + raw


def test_headers_rewritten_by_the_server_are_not_a_new_message() -> None:
    """Same UIDL, same body and Message-ID, new header fields: stored once, not twice."""
    w = World(_drop(), delete=False)
    w.poll()
    for uidl, raw in list(w.drop.messages.items()):
        w.drop.messages[uidl] = _rewrite_headers(raw)
    report = w.poll()
    assert report.stored == 0 and report.already_stored == 3 and len(w.raw_objects()) == 3
    again = w.poll()  # the ledger learnt the new sizes: nothing is even fetched now
    assert again.fetched == 0 and w.session.retrieved_uidls == []


def test_rewritten_message_after_a_lost_quit_is_deleted_not_stored_again() -> None:
    """Crash before QUIT, then the server rewrites headers: DELE follows, no second copy."""
    w = World(_drop())
    with pytest.raises(TransientError):
        w.poll(fail_quit=1)
    for uidl, raw in list(w.drop.messages.items()):
        w.drop.messages[uidl] = _rewrite_headers(raw)
    report = w.poll()
    assert report.stored == 0 and report.deleted == 3 and w.drop.messages == {}
    assert len(w.raw_objects()) == 3


def test_reused_uidl_with_another_body_is_a_new_message() -> None:
    """A freed UIDL handed to a different message (Mailutils) is stored as new."""
    w = World(_drop(RAW[0]), delete=False)
    w.poll()
    w.drop.messages["uid-0"] = RAW[0].replace(b"body one", b"body two, longer")
    report = w.poll()
    assert report.stored == 1 and len(w.raw_objects()) == 2


def test_hooks_see_each_new_message_after_its_objects_and_before_its_mark() -> None:
    """A stored-message hook runs once per newly stored message, with its keys and document,
    when both objects are in the store and the ledger does not yet know the message."""
    w = World(_drop())
    seen = []

    def hook(msg) -> None:
        assert msg.raw_key in w.store.objects and msg.json_key in w.store.objects
        assert msg.uidl not in w.ledger.records
        seen.append((msg.uidl, msg.sha256, msg.document["sha256"]))

    w.poll(hooks=(hook,))
    assert sorted(u for u, _, _ in seen) == ["uid-0", "uid-1", "uid-2"]
    assert all(sha == doc_sha for _, sha, doc_sha in seen)
    w.drop.add("uid-9", RAW[0].replace(b"one", b"nine"))
    seen.clear()
    w.poll(hooks=(hook,))
    assert [u for u, _, _ in seen] == ["uid-9"]


def test_a_failing_hook_fails_the_message_and_it_is_retried() -> None:
    """A hook that raises leaves the message unmarked and on the server; the next poll
    stores it again (same objects) and runs the hook again."""
    w = World(_drop(RAW[0]))
    calls = []

    def broken(msg) -> None:
        calls.append(msg.uidl)
        raise StorageError("outbox down")

    with pytest.raises(StorageError):
        w.poll(hooks=(broken,))
    assert w.ledger.records.get("uid-0") is None or w.ledger.records["uid-0"].state is State.FAILING
    assert len(w.drop.messages) == 1
    report = w.poll(hooks=(calls.append,))
    assert report.outcome == "ok" and w.drop.messages == {}
    assert calls[0] == "uid-0" and calls[1].uidl == "uid-0"


def _after_days(w: World, days: int) -> World:
    w.plan = replace(w.plan, delete_after_seconds=days * 86400.0)
    return w


def test_after_days_keeps_new_mail_on_the_server_until_it_is_due() -> None:
    """delete: after_days:N stores at once but sends no DELE (and no TOP) before N days."""
    w = _after_days(World(_drop()), 2)
    report = w.poll()
    assert report.stored == 3 and report.deleted == 0 and len(w.drop.messages) == 3
    w.now += 2 * 86400 - 1
    report = w.poll()
    assert report.deleted == 0 and w.session.topped == [] and w.session.retrieved_uidls == []
    assert {r.state for r in w.ledger.records.values()} == {State.STORED}


def test_after_days_deletes_each_message_once_its_own_time_has_come() -> None:
    """Each message is DELEd after a header check once stored_at + N days <= now, not before."""
    w = _after_days(World(_drop(RAW[0])), 1)
    w.poll()
    w.now += 3600
    w.drop.add("uid-1", RAW[1])
    w.poll()
    w.now += 86400 - 3600
    report = w.poll()
    assert report.deleted == 1 and w.session.topped == ["uid-0"]
    assert w.session.retrieved_uidls == [] and list(w.drop.messages) == ["uid-1"]
    assert w.ledger.records["uid-0"].state is State.DELETED
    w.now += 3600
    assert w.poll().deleted == 1 and w.drop.messages == {}


def test_after_days_refetches_a_due_message_whose_headers_changed() -> None:
    """A due UIDL whose header block changed is not DELEd blind: it is fetched as new."""
    w = _after_days(World(_drop(RAW[0])), 1)
    w.poll()
    w.now += 86400
    other = RAW[0].replace(b"<1@x>", b"<7@x>")
    w.drop.messages["uid-0"] = other
    report = w.poll()
    assert w.session.retrieved_uidls == ["uid-0"] and report.stored == 1
    assert report.deleted == 0 and other in w.raw_objects().values()


def test_the_ledger_records_how_the_store_protected_the_raw_object() -> None:
    """A store that reports protection (S3 write options) has it copied into the record."""

    class ProtectingStore(MemoryStore):
        def protection(self, key: str) -> dict[str, str]:
            return {"lock_mode": "COMPLIANCE", "key": key}

    w = World(_drop(RAW[0]))
    w.store = ProtectingStore()
    w.poll()
    (rec,) = w.ledger.records.values()
    assert rec.storage == {"lock_mode": "COMPLIANCE", "key": rec.raw_key}


def test_progress_counts_the_messages_to_fetch_as_they_are_handled() -> None:
    """The progress hook hears the total first, then each message once; nothing on a no-op."""
    w = World(_drop())
    calls: list[tuple[int, int]] = []
    session = w.drop.session()
    poll(
        w.plan, session, w.ledger, w.store, w.guard,
        clock=lambda: w.now, progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    calls.clear()
    poll(w.plan, w.drop.session(), w.ledger, w.store, w.guard, progress=lambda *a: calls.append(a))
    assert calls == [(0, 0)]


def _oversize_world(policy: str) -> World:
    """RAW[0] and a large message, with max_message_size between their LIST sizes."""
    big = b"Subject: big\r\nMessage-ID: <big@x>\r\n\r\n" + b"x" * 500 + b"\r\n"
    w = World(_drop(RAW[0], big))
    w.plan = replace(w.plan, max_message_size=200, oversize=policy)
    return w


@pytest.mark.parametrize("policy", ["leave", "store_raw"])
def test_oversize_policy_leaves_or_stores_raw_with_a_headers_only_json(policy: str) -> None:
    """leave keeps a message over max_message_size on the server (reported); store_raw stores
    it byte-exact with a headers-only JSON marked body-not-parsed-too-large, then deletes it."""
    w = _oversize_world(policy)
    report = w.poll()
    assert report.outcome == "ok"
    if policy == "leave":
        assert report.stored == 1 and report.oversize == 1 and list(w.drop.messages) == ["uid-1"]
        return
    assert report.stored == 2 and report.oversize == 0 and report.deleted == 2
    assert w.drop.messages == {}
    big = next(r for r in w.ledger.records.values() if r.size > 200)
    doc = json.loads(w.store.objects[big.json_key])
    assert doc["subject"] == "big" and "body-not-parsed-too-large" in doc["defects"]
    small = next(r for r in w.ledger.records.values() if r.size <= 200)
    assert "body-not-parsed-too-large" not in json.loads(w.store.objects[small.json_key]).get(
        "defects", []
    )


def _undercounting_poll(w: World, **faults: int):
    """A poll whose LIST reports 13 octets fewer than RETR returns, as GNU Mailutils pop3d
    does (it leaves its added X-UIDL field out of LIST and STAT)."""
    w.session = w.drop.session(**faults)
    w.session.entries = [replace(e, size=e.size - 13) for e in w.session.entries]
    return poll(w.plan, w.session, w.ledger, w.store, w.guard, clock=lambda: w.now)


def test_list_sizes_that_differ_from_retr_bytes_break_nothing() -> None:
    """LIST sizes are only compared with earlier LIST sizes: under-counted ones still store
    every message exactly, and after a lost QUIT the next poll DELEs without refetching."""
    w = World(_drop())
    with pytest.raises(TransientError):
        _undercounting_poll(w, fail_quit=1)
    assert sorted(w.raw_objects().values()) == sorted(RAW)
    assert {r.size for r in w.ledger.records.values()} == {len(r) - 13 for r in RAW}
    report = _undercounting_poll(w)
    assert w.session.retrieved_uidls == [] and report.deleted == 3 and w.drop.messages == {}
    assert len(w.store.objects) == 6


class _GatedStore(MemoryStore):
    """A slow store: each raw put waits for ``gate``; the raw put of ``broken`` raises at
    once (a store that is down) instead."""

    def __init__(self, broken: bytes | None = None) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.broken = broken
        self.raw_puts: list[bytes] = []

    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        if "/raw/" in key:
            data = body.read()
            self.raw_puts.append(data)
            if data == self.broken:
                raise TransientError("500 InternalError")
            assert self.gate.wait(10), "the gate was never opened"
        return super().put(key, body, content_type, must_match=must_match)


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _poll_while_stuck(w: World, store: _GatedStore, stuck: Callable[[], bool]) -> list[str]:
    """Poll in a thread while raw puts wait; once ``stuck`` holds (and a moment later), note
    what was retrieved, then let the store go on. The poll's report or error is kept."""
    w.store = store
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(w.poll())
        except Exception as err:  # noqa: BLE001 - handed to the test
            outcome.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    _until(lambda: hasattr(w, "session") and stuck())
    time.sleep(0.2)  # had it kept reading, more would be retrieved by now
    retrieved = list(w.session.retrieved_uidls)
    store.gate.set()
    thread.join(10)
    w.outcome = outcome[0]
    return retrieved


def test_the_poll_reads_three_messages_per_store_thread_ahead_and_no_more() -> None:
    """With one store thread stuck on the first message, the poll retrieves two more (so
    the thread finds them waiting) and then waits; everything is stored in the end."""
    w = World(_drop(*[b"Subject: %d\r\n\r\nbody\r\n" % i for i in range(8)]))
    w.plan = replace(w.plan, store_concurrency=1)
    retrieved = _poll_while_stuck(w, _GatedStore(), lambda: len(w.session.retrieved_uidls) >= 3)
    assert retrieved == ["uid-0", "uid-1", "uid-2"]
    assert w.outcome.outcome == "ok" and w.outcome.stored == 8 and w.drop.messages == {}


def test_read_ahead_is_bounded_by_bytes_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """However many store threads, no more than ``_READ_AHEAD_BYTES`` of mail (LIST sizes)
    is retrieved and not yet stored."""
    raws = [b"Subject: %d\r\n\r\n%s\r\n" % (i, b"x" * 40) for i in range(8)]
    monkeypatch.setattr(ingest.pipeline, "_READ_AHEAD_BYTES", 2 * len(raws[0]) + 1)
    w = World(_drop(*raws))
    retrieved = _poll_while_stuck(w, _GatedStore(), lambda: len(w.session.retrieved_uidls) >= 3)
    assert retrieved == ["uid-0", "uid-1", "uid-2"]  # the third tips it over: then it waits
    assert w.outcome.outcome == "ok" and w.outcome.stored == 8


def test_a_store_that_raises_stops_the_retrs_and_the_messages_read_ahead() -> None:
    """The second message's store raises while the first one's is still going: no message
    after it is even tried, the poll fails with that error, nothing is committed."""
    raws = [b"Subject: %d\r\n\r\nbody\r\n" % i for i in range(12)]
    w = World(_drop(*raws))
    w.plan = replace(w.plan, store_concurrency=2)
    store = _GatedStore(broken=raws[1])
    _poll_while_stuck(w, store, lambda: len(store.raw_puts) >= 2)
    assert isinstance(w.outcome, TransientError)
    assert store.raw_puts == raws[:2]  # the others were skipped, not each retried
    assert len(w.session.retrieved_uidls) < 6  # RETR stopped before the read-ahead filled up
    assert w.session.closed == "abandoned" and w.drop.quits == 0 and len(w.drop.messages) == 12

"""Section ``kept`` (issue 6, target 5): a kept mailbox of 100,000 messages, all in the ledger.

With ``delete: never`` every poll lists the whole mailbox again; one that finds nothing new
should cost a few Redis round trips and under 2x the time of the ``UIDL`` command itself.
The mailbox is written straight into Maildir (tiny messages, names that sort in delivery
order and carry their sizes, so Dovecot numbers them in that order without reading them);
the ledger is filled through ``RedisLedger`` (under the account's lock, as a poll does)
with the very records a poll would have written: state ``stored``, the SHA-256 of what RETR
returns, the LIST size, the header and body hashes and the Message-ID. The mapping from
POP3 message number to file is checked with ``TOP`` on a sample first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import redis

from bench.measure import run_timed
from bench.ours import ACCOUNT, Ours
from bench.pop3raw import time_uidl_session, top_headers, uidls
from bench.redis_count import CommandCounter
from bench.report import Target
from bench.runner import Bench, say
from harness import as_pop3
from ingest import keys
from ingest.ledger import RedisLedger
from ingest.lock import AccountLock
from ingest.model import LedgerRecord, State, header_block, message_id_of

ROUND_TRIP_LIMIT = 10  # "a few"
_FINISHED = re.compile(r'\{.*"event": ?"poll\.finished".*\}')


@dataclass(frozen=True)
class KeptRun:
    """One no-new poll and the bare session timed next to it."""

    uidl_s: float
    session_s: float
    poll_s: float  # in-process, from the poll's own poll.finished event
    wall_s: float  # the ingest process, start-up included
    maxrss_kb: int
    redis_commands: int
    redis_detail: str
    problems: list[str]


def message(n: int) -> bytes:
    """A tiny, distinct message (LF line ends, as a Maildir file holds it)."""
    return (
        f"From: Sender {n % 97} <s{n % 97}@example.com>\nTo: kept@example.com\n"
        f"Subject: kept message {n}\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
        f"Message-ID: <kept-{n}@bench.invalid>\n\nbody of message {n}\n"
    ).encode()


def fill_maildir(bench: Bench, count: int) -> None:
    """Write ``count`` messages into the bench user's Maildir/cur, already seen."""
    dovecot, user = bench.dovecot, bench.mailbox.user
    shutil.rmtree(dovecot.home(user) / "Maildir", ignore_errors=True)
    cur = dovecot.maildir(user) / "cur"
    ident = dovecot.identity
    for n in range(1, count + 1):
        raw = message(n)
        name = f"{1_600_000_000 + n:010d}.M{n:06d}P1.bench,S={len(raw)},W={len(as_pop3(raw))}:2,S"
        path = cur / name
        path.write_bytes(raw)
        if os.geteuid() == 0:
            os.chown(path, ident.uid, ident.gid)
    bench.mailbox.emptied()  # the other sections refill their own corpus


def record(n: int, now: float) -> LedgerRecord:
    """What a poll that stored message ``n`` would have written to the ledger."""
    wire = as_pop3(message(n))
    sha = hashlib.sha256(wire).hexdigest()
    head = header_block(wire)
    return LedgerRecord(
        State.STORED, sha, len(wire), keys.raw_key("", ACCOUNT, sha),
        keys.json_key("", ACCOUNT, sha), now, head_sha256=hashlib.sha256(head).hexdigest(),
        body_sha256=hashlib.sha256(wire[len(head) :]).hexdigest(),
        message_id=message_id_of(head),
    )  # fmt: skip


def fill_ledger(redis_url: str, listing: dict[int, str]) -> None:
    """Every listed message ``stored`` in the ledger, written under the account's lock."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    lock = AccountLock(client, ACCOUNT, ttl=120)
    if not lock.acquire():
        raise RuntimeError("the bench account is locked")
    ledger = RedisLedger(client, ACCOUNT, lock.token, 120)
    now = time.time()
    items = sorted(listing.items())
    for i in range(0, len(items), 5000):
        ledger.put({uidl: record(n, now) for n, uidl in items[i : i + 5000]})
    lock.release()
    client.close()


def check_numbering(bench: Bench, count: int) -> None:
    """POP3 message n is file n (a sample, checked by Message-ID)."""
    mb = bench.mailbox
    sample = sorted({1, count, *range(1, count + 1, max(1, count // 10))})
    for n, head in top_headers(bench.dovecot.pop3_port, mb.user, mb.password, sample).items():
        if f"<kept-{n}@bench.invalid>".encode() not in head:
            raise RuntimeError(f"kept: POP3 message {n} is not file {n}; cannot fill the ledger")


def one_run(bench: Bench, ours: Ours, config: str, count: int, rep: int | str) -> KeptRun:
    mb = bench.mailbox
    bare = time_uidl_session(bench.dovecot.pop3_port, mb.user, mb.password)
    log = bench.scratch / "logs" / f"kept-{rep}.log"
    with CommandCounter(ours.redis_url) as counter:
        timed = run_timed(ours.argv(config), bench.scratch, log=log)  # type: ignore[arg-type]
    problems = [] if timed.rc == 0 else [f"exit {timed.rc}: {timed.stderr_tail[-300:]}"]
    expect = (
        f"{ACCOUNT}: ok; listed {count}, fetched 0, stored 0 (0 bytes), already stored {count},"
    )
    if expect not in timed.stdout:
        problems.append(f"unexpected summary: {timed.stdout.strip()[:300]}")
    if bench.dovecot.message_count(mb.user) != count:
        problems.append("messages went missing from the kept mailbox")
    finished = _FINISHED.search(log.read_text(errors="replace"))
    poll_s = float(json.loads(finished[0])["seconds"]) if finished else float("nan")
    run = KeptRun(
        bare.uidl, bare.total, poll_s, timed.wall_s, timed.maxrss_kb, counter.total,
        counter.describe(), problems,
    )  # fmt: skip
    say(
        f"[kept] run {rep} UIDL {bare.uidl:.3f}s, bare session {bare.total:.3f}s, poll "
        f"{poll_s:.3f}s in-process / {timed.wall_s:.2f}s process, Redis {counter.total} "
        f"commands ({counter.describe()})  {'; '.join(problems) or 'ok'}"
    )
    return run


def kept_section(bench: Bench, ours: Ours, count: int) -> list[Target]:
    """Fill, warm, then time ``reps`` no-new polls of the kept mailbox."""
    mb = bench.mailbox
    t0 = time.monotonic()
    fill_maildir(bench, count)
    time_uidl_session(bench.dovecot.pop3_port, mb.user, mb.password)  # Dovecot indexes it
    listing = uidls(bench.dovecot.pop3_port, mb.user, mb.password)
    if len(listing) != count:
        raise RuntimeError(f"kept: Dovecot lists {len(listing)} messages, expected {count}")
    check_numbering(bench, count)
    fill_ledger(ours.redis_url, listing)
    say(f"[kept] {count} messages in the mailbox and the ledger ({time.monotonic() - t0:.0f} s)")
    store = {"url": f"file://{bench.scratch}/kept-store"}
    config = ours.config(bench.dovecot.pop3_port, store, "never")
    # The first poll after the ledger was filled looks every UIDL up and, finding nothing
    # to do, leaves the unchanged-mailbox note; the timed runs after it are the steady state.
    first = one_run(bench, ours, str(config), count, "first")
    runs = [one_run(bench, ours, str(config), count, rep) for rep in range(bench.args.reps)]
    bench.extra["kept"] = {
        "count": count, "first": asdict(first), "runs": [asdict(r) for r in runs]
    }  # fmt: skip
    ok = [r for r in runs if not r.problems]
    ratio = statistics.median(r.poll_s / r.uidl_s for r in ok) if ok else None
    commands = max(r.redis_commands for r in ok) if ok else None
    full = None if first.problems else first.poll_s / first.uidl_s
    return [
        Target("kept mailbox, no-new poll vs UIDL", ratio, 2.0, "x",
               f"{count} messages in the ledger; poll time in-process / bare UIDL command"),
        Target("kept mailbox, Redis commands per poll", commands, ROUND_TRIP_LIMIT, "",
               "client commands (pipelined ones counted singly) per no-new poll"),
        Target("kept mailbox, first no-new poll (full lookup) vs UIDL", full, 2.0, "x",
               "the poll that finds the ledger filled, looks up every UIDL, leaves the note"),
    ]  # fmt: skip


def kept_table(data: dict[str, object]) -> list[str]:
    """The Markdown table of the kept section's runs."""
    lines = [
        "| run | UIDL s | bare session s (connect, login, UIDL, QUIT) | ingest poll s "
        "(in-process) | ingest process wall s | peak RSS MiB | Redis commands |",
        "|---|---|---|---|---|---|---|",
    ]
    labelled: list[tuple[object, Any]] = [("first (full lookup)", data["first"])]
    labelled += list(enumerate(data["runs"]))  # type: ignore[arg-type]
    for i, r in labelled:
        lines.append(
            f"| {i} | {r['uidl_s']:.3f} | {r['session_s']:.3f} | {r['poll_s']:.3f} | "
            f"{r['wall_s']:.2f} | {r['maxrss_kb'] / 1024:.0f} | {r['redis_commands']} "
            f"({r['redis_detail']}) |"
        )
    return lines

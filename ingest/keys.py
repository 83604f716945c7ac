"""Every object key and Redis key, built by pure functions in one place.

Object keys are derived from content only (the sha256 of the raw message), so a retry
after any crash writes the very same key and never a second copy:

    {prefix}/{account}/raw/{sha[0:2]}/{sha}.eml    the raw message, byte-exact
    {prefix}/{account}/json/{sha[0:2]}/{sha}.json  the structured JSON document
    {prefix}/{account}/att/{sha[0:2]}/{sha}        one attachment's decoded bytes (stored once
                                                   per account however many mails carry it)
    {prefix}/index/account={account}/day={YYYY-MM-DD}/{sha}.ndjson
                                                   the message's index row (hive partitions;
                                                   day = UTC day of its Date header)

Redis keys (one namespace, ``ingest:``; the ``{account}`` hash tag keeps one account's
keys in one Redis Cluster slot):

    ingest:{account}:ledger     hash  UIDL -> ledger record (JSON)
    ingest:{account}:unchanged  string  a kept mailbox's note of the last completed poll
    ingest:{account}:lock       string  the poll lock token (with expiry)
    ingest:{account}:fence      counter  monotonically increasing fencing tokens
    ingest:{account}:last       hash  last poll outcome, for ``ingest status``
    ingest:{account}:stored:{YYYY-MM-DD}  counter  messages stored that UTC day (kept 3 days)
    ingest:{account}:oauth      string  the shared OAuth2 access token (expires with it)
    ingest:{account}:login-delay  string  present while the server's LOGIN-DELAY runs
    ingest:{account}:oauth:refreshing  string  single-flight flag while one worker refreshes
    ingest:{account}:outbox:{sink}:events   hash  event id -> CloudEvent JSON (pending or dead)
    ingest:{account}:outbox:{sink}:due      sorted set  event id -> when to (re)send it
    ingest:{account}:outbox:{sink}:attempts hash  event id -> failed deliveries so far
    ingest:{account}:outbox:{sink}:dead     sorted set  event id -> when it was dead-lettered
    ingest:{account}:events     hash  delivery counters and last errors, per sink
    ingest:{schedule}           sorted set  account -> next due time (unix seconds)
    ingest:{schedule}:intervals hash  account -> interval (seconds)
    ingest:{schedule}:digest    string  digest of the configured (account, interval) list
    ingest:{schedule}:tick      string  unix time of the dispatcher's latest tick (readiness)
    ingest:{schedule}:failures  hash  account -> failed polls in a row (backoff; gone on success)
"""

from __future__ import annotations

import re

ACCOUNT_NAME = re.compile(r"^[a-z0-9_-]+$")
RESERVED_ACCOUNT_NAMES = frozenset({"schedule"})  # ingest:{schedule}:... is the scheduler's
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _join(prefix: str, *parts: str) -> str:
    return "/".join(p for p in (prefix.strip("/"), *parts) if p)


def _check(account: str, sha256: str) -> None:
    if not ACCOUNT_NAME.match(account):
        raise ValueError(f"account name {account!r} does not match [a-z0-9_-]+")
    if not _SHA256.match(sha256):
        raise ValueError(f"not a lowercase hex sha256: {sha256!r}")


def raw_key(prefix: str, account: str, sha256: str) -> str:
    """Key of the raw message object."""
    _check(account, sha256)
    return _join(prefix, account, "raw", sha256[:2], f"{sha256}.eml")


def raw_prefix(prefix: str, account: str) -> str:
    """The key prefix under which every raw message of ``account`` lies."""
    return account_prefix(prefix, account, "raw")


def sha_of_raw_key(key: str) -> str | None:
    """The sha256 a raw key was built from, or None for anything else."""
    name = key.rsplit("/", 1)[-1]
    sha = name.removesuffix(".eml")
    return sha if name.endswith(".eml") and _SHA256.match(sha) else None


def json_key(prefix: str, account: str, sha256: str) -> str:
    """Key of the structured JSON document stored beside the raw message."""
    _check(account, sha256)
    return _join(prefix, account, "json", sha256[:2], f"{sha256}.json")


def attachment_key(prefix: str, account: str, sha256: str) -> str:
    """Key of an attachment's decoded content, shared by every message that carries it."""
    _check(account, sha256)
    return _join(prefix, account, "att", sha256[:2], sha256)


def account_prefix(prefix: str, account: str, kind: str) -> str:
    """The key prefix of one kind of object (``raw``, ``json``, ``att``) of ``account``."""
    if not ACCOUNT_NAME.match(account):
        raise ValueError(f"account name {account!r} does not match [a-z0-9_-]+")
    return _join(prefix, account, kind) + "/"


def sha_of_key(key: str) -> str | None:
    """The sha256 a raw, JSON, attachment or index key was built from, else None."""
    name = key.rsplit("/", 1)[-1]
    sha = name.split(".", 1)[0]
    return sha if _SHA256.match(sha) else None


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
UNDATED_DAY = "1970-01-01"  # the partition of messages without a usable Date (or before 1970)


def index_key(prefix: str, account: str, day: str, sha256: str) -> str:
    """Key of one message's index row (one NDJSON line), in hive-style partitions."""
    _check(account, sha256)
    if not _DAY.match(day):
        raise ValueError(f"not a YYYY-MM-DD day: {day!r}")
    return _join(prefix, "index", f"account={account}", f"day={day}", f"{sha256}.ndjson")


def index_prefix(prefix: str, account: str) -> str:
    """The key prefix of every index row of ``account``."""
    if not ACCOUNT_NAME.match(account):
        raise ValueError(f"account name {account!r} does not match [a-z0-9_-]+")
    return _join(prefix, "index", f"account={account}") + "/"


def day_of_index_key(key: str) -> str | None:
    """The ``day=`` partition of an index row key, or None."""
    for part in key.split("/"):
        if part.startswith("day=") and _DAY.match(part[4:]):
            return part[4:]
    return None


def probe_key(prefix: str) -> str:
    """The object ``ingest check`` and every worker start write (and readiness HEADs)."""
    return _join(prefix, "_ingest", "check.txt")


def redis_prefix(account: str) -> str:
    """What every Redis key of ``account`` starts with (a glob pattern when it is ``*``)."""
    return f"ingest:{{{account}}}:"


def ledger_key(account: str) -> str:
    return f"ingest:{{{account}}}:ledger"


def snapshot_key(account: str) -> str:
    """The ledger's note of a mailbox found unchanged (see ``RedisLedger.snapshot``)."""
    return f"ingest:{{{account}}}:unchanged"


def lock_key(account: str) -> str:
    return f"ingest:{{{account}}}:lock"


def fence_key(account: str) -> str:
    return f"ingest:{{{account}}}:fence"


def last_poll_key(account: str) -> str:
    return f"ingest:{{{account}}}:last"


def stored_day_key(account: str, day: str) -> str:
    """Messages of ``account`` stored on UTC day ``day`` (``YYYY-MM-DD``), for ``ingest status``."""
    return f"ingest:{{{account}}}:stored:{day}"


def login_delay_key(account: str) -> str:
    """Set for LOGIN-DELAY seconds after each login when the server advertises it."""
    return f"ingest:{{{account}}}:login-delay"


def oauth_token_key(account: str) -> str:
    return f"ingest:{{{account}}}:oauth"


def oauth_refresh_key(account: str) -> str:
    return f"ingest:{{{account}}}:oauth:refreshing"


SCHEDULE_KEY = "ingest:{schedule}"
INTERVALS_KEY = "ingest:{schedule}:intervals"
SCHEDULE_DIGEST_KEY = "ingest:{schedule}:digest"


def outbox_prefix(account: str) -> str:
    """What every outbox key of ``account`` starts with (``SINK:events`` and so on follow)."""
    return redis_prefix(account) + "outbox:"


def outbox_keys(account: str, sink: str) -> tuple[str, str, str, str]:
    """The outbox of one sink of ``account``: (events, due, attempts, dead)."""
    if not ACCOUNT_NAME.match(account) or not ACCOUNT_NAME.match(sink):
        raise ValueError(f"account {account!r} or sink {sink!r} does not match [a-z0-9_-]+")
    base = outbox_prefix(account) + sink
    return f"{base}:events", f"{base}:due", f"{base}:attempts", f"{base}:dead"


def event_stats_key(account: str) -> str:
    """Per-sink counters (pending, dead, delivered, failures) and the last error of each."""
    return f"ingest:{{{account}}}:events"


DISPATCH_TICK_KEY = "ingest:{schedule}:tick"
FAILURES_KEY = "ingest:{schedule}:failures"

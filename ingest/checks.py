"""``ingest check``: the config, Redis, the store (and its options) and every account."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

from ingest.config import Settings
from ingest.errors import ConfigError, IngestError
from ingest.events_config import SinkConfig
from ingest.interfaces import Put
from ingest.keys import probe_key
from ingest.object_params import ObjectWriter
from ingest.service import check_redis, endpoint_for, mailbox, redis_client
from ingest.spool import Spool
from ingest.storage_checks import protection_problems
from ingest.store import open_store
from ingest.store_s3 import S3Store

PROBE = b"ingest storage check: create-only writes must be refused when the key exists\n"


def redact_url(url: str) -> str:
    """A URL with any password replaced by ``***`` (Redis URLs may carry one)."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return parsed._replace(netloc=netloc).geturl()


def run_checks(
    settings: Settings, names: Sequence[str] = (), logins: int = 8
) -> Iterator[tuple[bool, str]]:
    """One ``(ok, line)`` per component; accounts ``names`` (all by default) are logged in to
    ``logins`` at a time, and reported in the order asked."""
    yield True, f"config {settings.source}: {len(settings.accounts)} account(s)"
    where = redact_url(settings.redis_url)
    try:
        policy = check_redis(redis_client(settings))
        good = policy == "noeviction"
        yield (
            good,
            f"redis {where}: reachable, maxmemory-policy {policy}"
            + (
                "" if good else " (expected noeviction: evicted ledger or broker keys cost re-work)"
            ),
        )
    except IngestError as err:
        yield False, f"redis {where}: {err}"
    yield _check_store(settings)
    yield from _check_protection(settings)
    yield from _check_sinks(settings)
    accounts = list(names) or [a.name for a in settings.accounts]
    with ThreadPoolExecutor(max(1, min(logins, len(accounts))), "check") as pool:
        yield from pool.map(lambda name: _check_account(settings, name), accounts)


def startup_problems(settings: Settings) -> list[str]:
    """What must hold before a worker takes tasks: Redis keeps keys, the store is safe.

    An evicting Redis could silently drop ledger, lock or broker keys; a store that ignores
    create-only writes could not prevent duplicates. Either refuses the worker's start.
    """
    problems = []
    try:
        policy = check_redis(redis_client(settings))
        if policy != "noeviction" and not policy.startswith("unknown"):
            problems.append(
                f"redis {redact_url(settings.redis_url)}: maxmemory-policy is {policy}; "
                "set it to noeviction (CONFIG SET maxmemory-policy noeviction, or redis.conf)"
            )
    except IngestError as err:
        problems.append(f"redis {redact_url(settings.redis_url)}: {err}")
    ok, line = _check_store(settings)
    if not ok:
        problems.append(line)
    return problems + protection_problems(settings)


def _check_protection(settings: Settings) -> Iterator[tuple[bool, str]]:
    """Object Lock and KMS key: one line per problem, or one ``ok`` when any is configured."""
    problems = protection_problems(settings)
    yield from ((False, problem) for problem in problems)
    opts = [settings.storage, *(settings.options_for(a) for a in settings.accounts)]
    asked = any(o.object_lock or o.legal_hold or o.sse == "kms" for o in opts)
    if asked and not problems:
        yield True, "storage options: Object Lock enabled and KMS keys present as configured"


def _check_store(settings: Settings) -> tuple[bool, str]:
    store = open_store(settings.storage)
    if isinstance(store, S3Store):  # the probe goes with the default class, encryption, tags
        store = store.for_account(ObjectWriter("_ingest", "_ingest", settings.storage))
    key = probe_key(settings.storage.prefix)
    try:
        store.put(key, Spool.of(PROBE), "text/plain")
        second = store.put(key, Spool.of(PROBE), "text/plain")
    except IngestError as err:
        return False, f"storage {store.describe()}: {err}"
    if second is not Put.EXISTED:
        return False, (
            f"storage {store.describe()}: a create-only write to an existing key succeeded; "
            "the store ignores If-None-Match, so duplicates cannot be prevented"
        )
    return True, f"storage {store.describe()}: writable, conditional writes and checksums honoured"


def _check_sinks(settings: Settings) -> Iterator[tuple[bool, str]]:
    """Every distinct event sink once (the default list and accounts' own lists): its
    secret is readable and it answers a probe that sends no event. A sink that fails never
    holds up polls, so this is only reported here, not refused at a worker's start."""
    from ingest.sinks import DeliveryError, open_sink  # noqa: PLC0415 - only with sinks

    lists = [("", settings.events)]
    lists += [(f"accounts({a.name}).", a.events) for a in settings.accounts if a.events]
    distinct: dict[SinkConfig, str] = {}  # frozen configs: equal ones are checked once
    for owner, sinks in lists:
        for cfg in sinks:
            distinct.setdefault(cfg, owner)
    client = redis_client(settings)  # connects on first use: not at all without sinks
    for cfg, owner in distinct.items():
        where = f"{owner}events({cfg.sink_name})"
        label = f"sink {where}"
        try:
            sink = open_sink(cfg, client, f"{settings.source}: {where}", None)
        except ConfigError as err:
            yield False, f"{label}: {err}"
            continue
        if sink is None:  # a celery sink: only the workers can send it
            yield True, f"{label}: a Celery task the workers send through their broker"
            continue
        try:
            yield True, f"{label}: {sink.probe()}"
        except DeliveryError as err:
            yield False, f"{label}: {err}"
        finally:
            sink.close()


def _check_account(settings: Settings, name: str) -> tuple[bool, str]:
    account = settings.account(name)
    ep = endpoint_for(account, settings)
    label = f"account {name} ({account.security}://{ep.host}:{ep.port})"
    try:
        with mailbox(settings, account, redis_client(settings)) as session:
            entries = session.listing()
            caps = " ".join(sorted(session.capabilities)) or "none"
            session.reset_and_quit()
    except IngestError as err:
        return False, f"{label}: {err}"
    return True, f"{label}: logged in, {len(entries)} message(s) waiting; CAPA {caps}"

"""Events of an account, end to end: record them during a poll, deliver them from the outbox.

The poll records an event in a store thread after the message's objects are stored and
before its ledger mark (a hook), so no event is ever sent for a message that could still
be lost, and a crash between the two records it again under the same id. Delivery runs
apart from polling (a beat-scheduled task, after each poll, or ``ingest events deliver``):
a sink that fails never holds up a poll; its events wait in the outbox and are retried
with exponential backoff and jitter, and dead-lettered after the sink's ``max_attempts``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
import structlog

from ingest import metrics
from ingest.config import AccountConfig, Settings
from ingest.errors import ConfigError
from ingest.events_config import SinkConfig
from ingest.model import StoredHook, StoredMessage

if TYPE_CHECKING:
    from ingest.events import Event
    from ingest.outbox import Outbox
    from ingest.sinks import DeliveryError, Sink, TaskSender

# The outbox, events and sinks modules are imported where they are used: a poll of an account
# without sinks (the usual case) needs none of them, and ``ingest poll`` starts up faster.

log = structlog.get_logger("ingest.events")
BATCH = 20  # events claimed at once per sink
ROUNDS = 50  # batches per sink and run at most: one run never goes on for ever


@dataclass(slots=True)
class DeliveryReport:
    """What one delivery run of one account did."""

    account: str
    delivered: int = 0
    failed: int = 0  # attempts that failed
    dead_lettered: int = 0  # events given up on in this run
    skipped: list[str] = field(default_factory=list)  # sinks left to others (celery)
    pending: int = 0  # the account's outbox after the run, all sinks (for metrics, the CLI)
    dead: int = 0


def account_sinks(settings: Settings, account: AccountConfig) -> tuple[SinkConfig, ...]:
    """The account's own ``events:`` list, else the top-level default."""
    return settings.events if account.events is None else account.events


def outbox_for(settings: Settings, client: redis.Redis, name: str) -> Outbox:
    from ingest.outbox import Outbox  # noqa: PLC0415 - see the imports

    sinks = account_sinks(settings, settings.account(name))
    return Outbox(client, name, [s.sink_name for s in sinks])


def recording_hooks(
    settings: Settings, client: redis.Redis, account: AccountConfig
) -> tuple[StoredHook, ...]:
    """The poll hook that puts each newly stored message's event in the outbox (none without
    sinks). A Redis failure raises, which fails the message: it is retried next poll."""
    if not account_sinks(settings, account):
        return ()
    from ingest.events import message_stored  # noqa: PLC0415 - see the imports

    outbox = outbox_for(settings, client, account.name)

    def record(msg: StoredMessage) -> None:
        event = message_stored(msg, time.time())
        added = outbox.record(event, time.time())
        log.info("event.recorded", account=msg.account, uidl=msg.uidl, event_id=event.id,
                 sinks=added)  # fmt: skip

    return (record,)


def deliver_account(
    settings: Settings,
    client: redis.Redis,
    name: str,
    *,
    sender: TaskSender | None = None,
    clock: Callable[[], float] = time.time,
) -> DeliveryReport:
    """Send every due event of account ``name`` to its sinks (celery ones need ``sender``)."""
    from ingest.outbox import sink_stats, totals  # noqa: PLC0415 - see the imports
    from ingest.sinks import open_sink  # noqa: PLC0415

    account = settings.account(name)
    outbox = outbox_for(settings, client, name)
    report = DeliveryReport(name)
    for cfg in account_sinks(settings, account):
        try:
            where = f"{settings.source}: accounts({name}).events({cfg.sink_name})"
            sink = open_sink(cfg, client, where, sender)
        except ConfigError as err:
            log.error("event.sink_unusable", account=name, sink=cfg.sink_name, error=str(err))
            outbox.note_error(cfg.sink_name, str(err), clock())
            continue
        if sink is None:
            report.skipped.append(cfg.sink_name)
            continue
        try:
            _SinkRun(outbox, sink, cfg, report, clock).run()
        finally:
            sink.close()
    report.pending, report.dead = totals(sink_stats(client, [name])[name])
    metrics.set_event_counts(name, report.pending, report.dead)
    if report.delivered or report.failed:
        log.info("events.delivery_finished", account=name, delivered=report.delivered,
                 failed=report.failed, dead_lettered=report.dead_lettered,
                 pending=report.pending, dead=report.dead)  # fmt: skip
    return report


@dataclass(frozen=True, slots=True)
class _SinkRun:
    """One delivery run over one sink of one account."""

    outbox: Outbox
    sink: Sink
    cfg: SinkConfig
    report: DeliveryReport
    clock: Callable[[], float]

    def run(self) -> None:
        """Claim and send batches until none is due; the first failure stops this sink for
        now (the rest of the batch waits for the failed event's retry time)."""
        lease = 30 + BATCH * self.sink.timeout
        for _ in range(ROUNDS):
            claimed = self.outbox.claim(self.sink.name, self.clock(), lease, BATCH)
            for i, event in enumerate(claimed):
                retry_at = self.send(event)
                if retry_at is not None:
                    self.outbox.defer(self.sink.name, [e.id for e in claimed[i + 1 :]], retry_at)
                    return
            if len(claimed) < BATCH:
                return

    def send(self, event: Event) -> float | None:
        """Send one event; None when it went out, else when to try this sink again."""
        from ingest.sinks import DeliveryError  # noqa: PLC0415 - see the imports

        bound = log.bind(account=event.account, sink=self.sink.name, event_id=event.id)
        try:
            self.sink.send(event)
        except DeliveryError as err:
            return self._failed(event, err, bound)
        if self.outbox.ack(self.sink.name, event.id, self.clock()):
            self.report.delivered += 1
            bound.info("event.delivered")
        return None

    def _failed(self, event: Event, err: DeliveryError, bound: Any) -> float:
        now = self.clock()
        policy = (self.cfg.max_attempts, self.cfg.retry_delay, self.cfg.retry_delay_max)
        jitter = random.random()  # noqa: S311 - jitter, not crypto
        failure = self.outbox.fail(
            self.sink.name, event.id, now, str(err), policy=policy, jitter=jitter
        )
        self.report.failed += 1
        if failure.retry_at is None:
            self.report.dead_lettered += 1
            bound.error("event.dead_lettered", attempts=failure.attempts, error=str(err))
            return now
        bound.warning("event.delivery_failed", attempts=failure.attempts, error=str(err),
                      retry_in=round(failure.retry_at - now, 1))  # fmt: skip
        return failure.retry_at

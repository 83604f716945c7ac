"""``ingest events``: deliver pending events by hand, list pending or dead ones, retry the dead."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Iterator

import click

from ingest.cli import EX_TEMPFAIL, CliContext, list_or_delete, main
from ingest.config import Settings
from ingest.errors import IngestError


def _accounts(settings: Settings, names: tuple[str, ...]) -> list[str]:
    """The named accounts (all by default) that have event sinks."""
    from ingest.delivery import account_sinks  # noqa: PLC0415

    wanted = [settings.account(n) for n in names] or list(settings.accounts)
    return [a.name for a in wanted if account_sinks(settings, a)]


def _when(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@main.group()
def events() -> None:
    """Events for downstream automation: deliver, list and retry (see README, Events)."""


@events.command(name="deliver")
@click.argument("names", nargs=-1)
@click.pass_obj
def events_deliver(obj: CliContext, names: tuple[str, ...]) -> None:
    """Send the due events of the NAMES accounts (default: all) now.

    Celery sinks are left to the workers. Exit status 1 when a sink failed (its events
    stay pending and are retried with backoff), 75 when Redis is unavailable.
    """
    from ingest.delivery import deliver_account  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    settings = obj.settings()
    client = redis_client(settings)
    failed = 0
    try:
        for name in _accounts(settings, names):
            report = deliver_account(settings, client, name)
            failed += report.failed
            skipped = (
                f"; left to the workers: {', '.join(report.skipped)}" if report.skipped else ""
            )
            click.echo(
                f"{name}: delivered {report.delivered}, failed {report.failed}, "
                f"dead-lettered {report.dead_lettered}; now pending {report.pending}, "
                f"dead {report.dead}{skipped}"
            )
    except IngestError as err:
        click.echo(f"events: {err}", err=True)
        sys.exit(EX_TEMPFAIL)
    if failed:
        sys.exit(1)


@events.command(name="list")
@click.argument("names", nargs=-1)
@click.option("--dead", is_flag=True, help="Dead-lettered events instead of pending ones.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the event.")
@click.pass_obj
def events_list(obj: CliContext, names: tuple[str, ...], dead: bool, as_json: bool) -> None:
    """Pending (or, with --dead, dead-lettered) events of the NAMES accounts (default: all)."""
    from ingest.delivery import outbox_for  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    settings = obj.settings()
    client = redis_client(settings)
    shown = 0
    for name in _accounts(settings, names):
        outbox = outbox_for(settings, client, name)
        for sink in outbox.sinks:
            for e in outbox.entries(sink, dead=dead):
                shown += 1
                if as_json:
                    record = {"account": e.account, "sink": e.sink, "id": e.id, "when": e.when}
                    record |= {"attempts": e.attempts, "event": json.loads(e.body or "null")}
                    click.echo(json.dumps(record, ensure_ascii=False))
                else:
                    subject = json.loads(e.body or "{}").get("data", {}).get("subject")
                    click.echo(
                        f"{e.account}\t{e.sink}\t{e.id}\t{_when(e.when)}\t"
                        f"{e.attempts} attempt(s)\t{subject or ''}"
                    )
    if not shown and not as_json:
        click.echo(f"no {'dead-lettered' if dead else 'pending'} events", err=True)


@events.command(name="retry")
@click.argument("name")
@click.argument("ids", nargs=-1)
@click.option("--sink", "sinks", multiple=True, help="Only this sink (repeatable).")
@click.option("--all", "everything", is_flag=True, help="Every dead-lettered event.")
@click.pass_obj
def events_retry(
    obj: CliContext, name: str, ids: tuple[str, ...], sinks: tuple[str, ...], everything: bool
) -> None:
    """Move dead-lettered events of account NAME back to pending (attempts start again)."""
    from ingest.delivery import outbox_for  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    if not ids and not everything:
        raise click.UsageError("name the event ids to retry, or pass --all")
    settings = obj.settings()
    outbox = outbox_for(settings, redis_client(settings), settings.account(name).name)
    unknown = set(sinks) - set(outbox.sinks)
    if unknown:
        raise click.UsageError(f"{name} has no sink {', '.join(sorted(unknown))}")
    count = sum(outbox.requeue(s, list(ids), time.time()) for s in sinks or outbox.sinks)
    click.echo(f"{name}: {count} event(s) back in the outbox; the next delivery sends them")


@events.command(name="prune")
@click.argument("names", nargs=-1)
@click.option("--yes", is_flag=True, help="Delete them (without it, only list them).")
@click.pass_obj
def events_prune(obj: CliContext, names: tuple[str, ...], yes: bool) -> None:
    """Outboxes of sinks no longer in the config, for the NAMES accounts (default: all).

    A sink removed from an account's list keeps its pending and dead-lettered events and
    its counters in Redis. This lists them; with --yes it deletes them. Run it once every
    worker has the new config, or a worker with the old one may record into them again.
    Exit status: 0, 75 Redis unavailable.
    """
    from ingest.delivery import account_sinks  # noqa: PLC0415
    from ingest.outbox import drop_sink, leftover_sinks  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    settings = obj.settings()
    client = redis_client(settings)
    accounts = [settings.account(n) for n in names] or list(settings.accounts)

    def lines() -> Iterator[str]:
        for account in accounts:
            configured = [s.sink_name for s in account_sinks(settings, account)]
            for sink, (pending, dead) in leftover_sinks(client, account.name, configured).items():
                if yes:
                    drop_sink(client, account.name, sink)
                what = "deleted" if yes else "not in the config"
                yield f"{account.name}\t{sink}\t{pending} pending\t{dead} dead\t{what}"

    list_or_delete("events", lines(), yes=yes, nothing="no outbox of a removed sink")

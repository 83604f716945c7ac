"""``ingest quarantine list|retry``: the messages that kept failing, and their release."""

from __future__ import annotations

import json
import sys

import click

from ingest.cli import EX_TEMPFAIL, CliContext, main
from ingest.errors import IngestError


@main.group()
def quarantine() -> None:
    """List and retry messages that repeatedly failed to store (they stay on the server)."""


@quarantine.command(name="list")
@click.argument("names", nargs=-1)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per message, per line (account, uidl, size, failures, reason, since).",
)
@click.pass_obj
def quarantine_list(obj: CliContext, names: tuple[str, ...], as_json: bool) -> None:
    """Quarantined messages of the NAMES accounts (default: all)."""
    from ingest.quarantine import list_quarantined  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    settings = obj.settings()
    wanted = [settings.account(n).name for n in names] or [a.name for a in settings.accounts]
    items = list_quarantined(redis_client(settings), wanted)
    for item in items:
        rec = item.record
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "account": item.account,
                        "uidl": item.uidl,
                        "size": rec.size,
                        "failures": rec.failures,
                        "reason": rec.reason,
                        "since": rec.stored_at,
                    }
                )
            )
        else:
            click.echo(
                f"{item.account}\t{item.uidl}\t{rec.size} bytes\t{rec.failures} failures"
                f"\t{rec.reason}"
            )
    if not items and not as_json:
        click.echo("no quarantined messages", err=True)


@quarantine.command(name="retry")
@click.argument("name")
@click.argument("uidls", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Release every quarantined message.")
@click.pass_obj
def quarantine_retry(obj: CliContext, name: str, uidls: tuple[str, ...], everything: bool) -> None:
    """Release quarantined UIDLS of account NAME so the next poll tries them again.

    Takes the account's lock. Exit status: 0, 75 while a poll holds the lock.
    """
    from ingest.quarantine import release  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    if not uidls and not everything:
        raise click.UsageError("name the UIDLs to retry, or pass --all")
    settings = obj.settings()
    try:
        count = release(
            redis_client(settings),
            settings,
            settings.account(name).name,
            None if everything else list(uidls),
        )
    except IngestError as err:
        click.echo(f"{name}: {err}", err=True)
        sys.exit(EX_TEMPFAIL)
    click.echo(f"{name}: released {count} message(s); the next poll retries them")

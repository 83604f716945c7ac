"""``ingest status`` and ``ingest accounts``: each account's last poll, and the config."""

from __future__ import annotations

import json
import sys

import click

from ingest.cli import CliContext, main


@main.command()
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per account, per line (every column)."
)
@click.pass_obj
def status(obj: CliContext, as_json: bool) -> None:
    """Per account: last poll, outcome, stored today, backlog, lock holder, last error.

    Also the last poll's counts and the ledger size; one Redis round trip for all accounts.
    The lock holder is the token of the poll running now.

    Backlog: messages the last poll listed that are neither stored nor deliberately left on
    the server (oversize, quarantined); more than 0 after a poll that failed part-way.
    """
    import datetime as dt  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    from ingest.service import redis_client  # noqa: PLC0415
    from ingest.status import account_statuses, with_events  # noqa: PLC0415

    settings = obj.settings()
    client = redis_client(settings)
    rows = with_events(client, account_statuses(client, [a.name for a in settings.accounts]))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict()))
        return
    table = Table(
        "account",
        "last poll (UTC)",
        "outcome",
        "listed",
        "stored",
        "deleted",
        "quarantined",
        "stored today",
        "backlog",
        "ledger",
        "lock holder",
        "last error",
        "events pending/dead",
        "event sink error",
        title="accounts (last poll's counts; stored today: since 00:00 UTC)",
    )
    for r in rows:
        when = (
            dt.datetime.fromtimestamp(r.last_finished, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
            if r.last_finished
            else "-"
        )
        table.add_row(
            r.account,
            when,
            r.outcome,
            str(r.listed),
            str(r.stored),
            str(r.deleted),
            str(r.quarantined),
            str(r.stored_today),
            str(r.backlog),
            str(r.ledger_size),
            r.lock_holder or "-",
            r.error[:60],
            f"{r.events_pending}/{r.events_dead}",
            r.events_error[:60],
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@main.command()
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The whole configuration as one JSON document (secrets shown by source only).",
)
@click.pass_obj
def accounts(obj: CliContext, as_json: bool) -> None:
    """The configuration as loaded: defaults filled in, secrets never shown.

    Accounts from accounts_dir are included. Of a secret only the environment variable or
    file it comes from is shown.
    """
    from ingest.status import describe_settings  # noqa: PLC0415

    data = describe_settings(obj.settings())
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for acc in data["accounts"]:
        secret = acc.get("password_env") or acc.get("password_file") or "oauth2"
        click.echo(
            f"{acc['name']}: {acc['security']}://{acc['host']}:{acc['port'] or 'default'} "
            f"user {acc['username']}, auth {acc['auth']} (secret from {secret}), "
            f"delete {acc['delete']}, every {acc['interval']} s"
        )

"""``ingest ledger show NAME [UIDL]``: what the UIDL ledger knows, as a table or JSON lines."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import click

from ingest.cli import CliContext, list_or_delete, main
from ingest.cli_completion import account_names
from ingest.errors import IngestError
from ingest.model import LedgerRecord, State


@main.group()
def ledger() -> None:
    """Inspect the UIDL ledger (stored, deleted, failing and quarantined messages).

    Per UIDL: its state, size, sha256 and object keys, when it was stored, failures.
    """


@ledger.command(name="show")
@click.argument("name", shell_complete=account_names)
@click.argument("uidl", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record, per line.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in State]),
    help="Only records in this state (repeatable).",
)
@click.pass_obj
def show(
    obj: CliContext, name: str, uidl: str | None, as_json: bool, states: tuple[str, ...]
) -> None:
    """The ledger records of account NAME, oldest first, or every field of one UIDL.

    Exit status: 0; 1 when UIDL is not in the ledger (never stored nor attempted, or
    pruned after it vanished from the server) or Redis is unreachable; 78 for an unknown
    account or a configuration error.
    """
    from ingest.ledger import read_records  # noqa: PLC0415 - keeps `ingest --help` fast
    from ingest.service import redis_client  # noqa: PLC0415

    settings = obj.settings()
    account = settings.account(name).name
    try:
        found = read_records(redis_client(settings), account, None if uidl is None else [uidl])
        records = [(u, r) for u, r in found if not states or r.state.value in states]
    except IngestError as err:
        click.echo(f"{name}: {err}", err=True)
        sys.exit(1)
    if uidl is not None and not records:
        click.echo(f"{name}: UIDL {uidl!r} is not in the ledger", err=True)
        sys.exit(1)
    records.sort(key=lambda item: (item[1].stored_at, item[0]))
    if as_json:
        for u, rec in records:
            click.echo(json.dumps(as_dict(account, u, rec)))
    elif uidl is not None:
        for field, value in as_dict(account, *records[0]).items():
            click.echo(f"{field:>12}  {value if value not in (None, '') else '-'}")
    else:
        _table(account, records)


def as_dict(account: str, uidl: str, record: LedgerRecord) -> dict[str, Any]:
    """One record as shown by ``--json``: account, uidl, then the record's fields."""
    data = asdict(record)
    data["state"] = record.state.value
    return {"account": account, "uidl": uidl, **data}


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _table(account: str, records: list[tuple[str, LedgerRecord]]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(
        "uidl", "state", "size", "stored (UTC)", "gone since", "failures", "sha256", "reason",
        title=f"ledger of {account}: {len(records)} record(s)",
    )  # fmt: skip
    for u, rec in records:
        table.add_row(
            u, rec.state.value, str(rec.size), _when(rec.stored_at), _when(rec.gone_since),
            str(rec.failures), rec.sha256[:16], rec.reason[:60],
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@ledger.command(name="forget")
@click.argument("names", nargs=-1)
@click.option("--yes", is_flag=True, help="Delete them (without it, only list them).")
@click.pass_obj
def forget(obj: CliContext, names: tuple[str, ...], yes: bool) -> None:
    """Redis keys of accounts no longer in the config: list them, or delete them (--yes).

    Without NAMES: every account with keys in Redis (ledger, outbox, counters) that the
    config does not name. Stored objects are not touched. An account added again later
    starts with an empty ledger: what is still on its server is downloaded again (no
    duplicate objects: keys are content-derived; its events are recorded again, with the
    same ids). Refused for an account still in the config, and while a poll holds its lock.
    Exit status: 0; 1 a named account is still configured; 75 one is being polled, or
    Redis is unavailable.
    """
    from ingest.keys import ACCOUNT_NAME  # noqa: PLC0415 - keeps `ingest --help` fast
    from ingest.ledger import accounts_in_redis, forget_account  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415

    settings = obj.settings()
    configured = {a.name for a in settings.accounts}
    bad = [n for n in names if not ACCOUNT_NAME.match(n)]
    if bad:
        raise click.UsageError(f"not an account name: {', '.join(bad)}")
    still = [n for n in names if n in configured]
    if still:
        click.echo(f"{', '.join(still)}: still in the config; remove it there first", err=True)
        sys.exit(1)
    client = redis_client(settings)

    def lines() -> Iterator[str]:
        found = accounts_in_redis(client)
        for name in names or sorted(set(found) - configured):
            count, records = found.get(name, (0, 0))
            if yes:
                yield f"{name}\t{forget_account(client, name)} keys deleted"
            else:
                yield f"{name}\t{count} keys\t{records} ledger records\tnot in the config"

    nothing = "no account in Redis that the config does not name"
    list_or_delete("ledger", lines(), yes=yes, nothing=nothing)

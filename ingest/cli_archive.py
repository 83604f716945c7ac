"""Archive commands: ``search``, ``export``, ``verify`` and ``index rebuild``."""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ingest.cli import CliContext, main
from ingest.config import Settings
from ingest.errors import IngestError
from ingest.interfaces import BlobStore

if TYPE_CHECKING:
    from ingest.export import Sink
    from ingest.search import Query


def _accounts(settings: Settings, names: tuple[str, ...]) -> tuple[str, ...]:
    named = tuple(settings.account(n).name for n in names)
    return named or tuple(a.name for a in settings.accounts)


def _store(settings: Settings) -> BlobStore:
    from ingest.store import open_store  # noqa: PLC0415 - keeps `ingest --help` fast

    return open_store(settings.storage)


@contextmanager
def _progress(label: str, total: int | None) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr when it is a terminal; yields the 'one more done' callback."""
    from rich.progress import Progress  # noqa: PLC0415

    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A YYYY-MM-DD day, checked (the index compares days as text)."""
    if value is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise click.BadParameter("expected YYYY-MM-DD")
    return value


def _filters(func: Callable[..., Any]) -> Callable[..., Any]:
    """The selection options shared by ``search`` and ``export``."""
    options = [
        click.argument("accounts", nargs=-1),
        click.option("--since", callback=_day, help="First day (YYYY-MM-DD, UTC, of the Date)."),
        click.option("--until", callback=_day, help="Last day (YYYY-MM-DD), inclusive."),
        click.option("--from", "sender", help="Part of a From address or name (any case)."),
        click.option("--to", "recipient", help="Part of a To or Cc address (any case)."),
        click.option("--subject", "words", multiple=True, help="A word of the subject (repeat)."),
        click.option("--message-id", help="Exact Message-ID (with or without <>)."),
        click.option("--has-attachment/--no-attachment", default=None, help="With/without."),
        click.option("--limit", type=click.IntRange(min=1), help="At most this many messages."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _query(settings: Settings, accounts: tuple[str, ...], **kw: Any) -> Query:
    from ingest.search import Query  # noqa: PLC0415 - keeps the start-up of other commands short

    words = tuple(w for text in kw.pop("words") for w in text.split())
    return Query(accounts=_accounts(settings, accounts), words=words, **kw)


@main.command()
@_filters
@click.option("--json", "as_json", is_flag=True, help="Whole index rows, one JSON per line.")
@click.pass_obj
def search(obj: CliContext, /, *, accounts: tuple[str, ...], as_json: bool, **kw: Any) -> None:
    """Find messages in the index of ACCOUNTS (default: all); a table or JSON lines."""
    from ingest.search import search as run  # noqa: PLC0415

    settings = obj.settings()
    if not settings.storage.index:
        click.echo("note: storage.index is off; only rows written by `ingest index rebuild` "
                   "are searched", err=True)  # fmt: skip
    rows = run(_store(settings), settings.storage.prefix, _query(settings, accounts, **kw))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, sort_keys=True))
        return
    _table(list(rows))


def _table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table("date (UTC)", "account", "from", "subject", "size", "att", "sha256")
    for r in rows:
        sender = (r.get("from") or [""])[0]
        when = (r.get("date") or "-").replace("T", " ").rstrip("Z")
        table.add_row(when, r["account"], sender, r.get("subject") or "", str(r.get("size")),
                      str(len(r.get("attachments") or [])), r["sha256"][:16])  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 200).print(table)
    click.echo(f"{len(rows)} message(s)", err=True)


@main.command()
@_filters
@click.option("--sha", "shas", multiple=True, help="Only this sha256 (repeat); needs one ACCOUNT.")
@click.option("--format", "kind", type=click.Choice(["mbox", "zip", "maildir"]), required=True)
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The mbox or zip file (must not exist), or the Maildir directory.")  # fmt: skip
@click.option("--eol", type=click.Choice(["crlf", "lf"]), default="crlf", show_default=True,
              help="mbox line ends: as stored (crlf) or Unix (lf).")  # fmt: skip
@click.pass_obj
def export(
    obj: CliContext, /, *, accounts: tuple[str, ...], shas: tuple[str, ...], kind: str, out: Path,
    eol: str, **kw: Any,
) -> None:  # fmt: skip
    """Export the selected messages, byte-exact, as an mbox, a zip of .eml, or into a Maildir.

    Messages are selected in the index (the filters of `search`), or by --sha from their
    JSON documents. Each is hashed on the way out: a corrupt object stops the export.
    """
    from ingest.export import open_sink  # noqa: PLC0415

    settings = obj.settings()
    store = _store(settings)
    try:
        rows = _selection(settings, store, accounts, shas, kw)
        written = _export(store, open_sink(kind, out, eol), rows)
    except (IngestError, OSError, ValueError) as err:
        click.echo(f"export failed: {err}", err=True)
        sys.exit(1)
    click.echo(f"{written} message(s) exported to {out} ({len(rows) - written} already there)")


def _export(store: BlobStore, sink: Sink, rows: list[dict[str, Any]]) -> int:
    """Stream every selected message into ``sink``; how many were written (not skipped)."""
    from ingest.export import export_one  # noqa: PLC0415

    written = 0
    try:
        with _progress(f"exporting {len(rows)}", len(rows)) as advance:
            for row in rows:
                written += export_one(store, sink, row)
                advance()
    finally:
        sink.close()
    return written


def _selection(
    settings: Settings, store: BlobStore, accounts: tuple[str, ...], shas: tuple[str, ...],
    kw: dict[str, Any],
) -> list[dict[str, Any]]:  # fmt: skip
    """Index rows of the messages to export (built from the JSON documents for --sha)."""
    from ingest import index, keys  # noqa: PLC0415
    from ingest.search import search as run  # noqa: PLC0415

    if not shas:
        return list(run(store, settings.storage.prefix, _query(settings, accounts, **kw)))
    if len(accounts) != 1:
        raise click.UsageError("--sha needs exactly one ACCOUNT")
    prefix, name = settings.storage.prefix, _accounts(settings, accounts)[0]
    docs = [json.loads(store.get(keys.json_key(prefix, name, s))) for s in shas]
    return [index.build_row(doc, prefix) for doc in docs]


@main.command()
@click.option("--account", "accounts", multiple=True, help="Only this account (repeat).")
@click.option(
    "--sample",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    help="Fraction of objects re-read and hashed (listings are always complete).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="At most this many object reads per second.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Stop after this many reads (resume later with the same --state).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Cursor and findings file: an interrupted run resumes from it.",
)
@click.option("--seed", type=int, help="Seed of the sample (default: random).")
@click.option("--json", "as_json", is_flag=True, help="Findings and summary as JSON lines.")
@click.pass_obj  # fmt: skip
def verify(
    obj: CliContext, /, *, accounts: tuple[str, ...], sample: float, rate: float | None,
    limit: int | None, state: Path | None, seed: int | None, as_json: bool,
) -> None:  # fmt: skip
    """Fixity audit: re-read objects, recompute sha256, check documents and index rows.

    Reports missing, corrupt and orphaned objects. Exit status: 0 nothing found, 1 problems
    found, 3 stopped at --limit or interrupted (run again with the same --state), 78 config.
    """
    from ingest.verify import VerifyPlan  # noqa: PLC0415
    from ingest.verify import verify as run  # noqa: PLC0415
    from ingest.verify_state import Finding, Pacer, State, Stop  # noqa: PLC0415

    settings = obj.settings()
    names = _accounts(settings, accounts)

    def show(finding: Finding) -> None:
        click.echo(json.dumps(finding.as_dict()) if as_json else finding.line())

    scope = {"accounts": sorted(names), "sample": sample, "prefix": settings.storage.prefix}
    audit = State(state, scope, show)
    for earlier in audit.findings:
        show(earlier)
    plan = VerifyPlan(names, settings.storage.prefix, settings.storage.index, sample,
                      random.Random(seed))  # noqa: S311 - sampling, not secrets  # fmt: skip
    try:
        run(_store(settings), plan, audit, Pacer(rate, limit))
    except (Stop, KeyboardInterrupt) as err:
        _summary(audit.summary(), as_json, f"stopped ({err or 'interrupted'}); resume with --state")
        sys.exit(3)
    except IngestError as err:
        audit.save()
        click.echo(f"verify failed: {err}", err=True)
        sys.exit(1)
    _summary(audit.summary(), as_json, "resumed run complete" if audit.resumed else "complete")
    sys.exit(1 if audit.findings else 0)


def _summary(counts: dict[str, int], as_json: bool, status: str) -> None:
    if as_json:
        click.echo(json.dumps({"summary": status, **counts}))
        return
    click.echo(
        f"verify {status}: {counts['checked']} message(s) and attachment(s) re-read; "
        f"{counts['missing']} missing, "
        f"{counts['corrupt']} corrupt, {counts['orphaned']} orphaned"
    )


@main.group(name="index")
def index_group() -> None:
    """The archive index (one row per message, queryable by DuckDB or Athena)."""


@index_group.command(name="rebuild")
@click.argument("accounts", nargs=-1)
@click.pass_obj
def index_rebuild(obj: CliContext, accounts: tuple[str, ...]) -> None:
    """Recreate the index rows of ACCOUNTS (default: all) from their JSON documents."""
    from ingest import index  # noqa: PLC0415

    settings = obj.settings()
    store, failed = _store(settings), 0
    for name in _accounts(settings, accounts):
        with _progress(f"indexing {name}", None) as advance:
            r = index.rebuild(store, settings.storage.prefix, name, progress=advance)
        failed += r.failed
        click.echo(
            f"{name}: {r.documents} document(s): {r.created} row(s) created, {r.rewritten} "
            f"rewritten, {r.unchanged} unchanged, {r.failed} failed"
        )
    sys.exit(1 if failed else 0)

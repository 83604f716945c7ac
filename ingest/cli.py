"""The ``ingest`` command line: check, poll, worker, beat."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ingest import allocator, logs
from ingest.config import Settings
from ingest.config_load import CONFIG_ENV, load_settings
from ingest.errors import ConfigError, IngestError

if TYPE_CHECKING:
    from ingest.model import PollReport
    from ingest.pipeline import ProgressHook

EX_CONFIG = 78
EX_TEMPFAIL = 75


class CliContext:
    def __init__(self, config: str | None) -> None:
        self.config = config

    def settings(self) -> Settings:
        return load_settings(self.config)  # a ConfigError ends the command: see _Commands


class _Commands(click.Group):
    """``ingest``: a configuration error from any command (a bad file, an unknown account
    name) ends it with one ``config error:`` line per problem and exit status 78."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            for problem in err.problems:
                click.echo(f"config error: {problem}", err=True)
            sys.exit(EX_CONFIG)


def list_or_delete(what: str, lines: Iterator[str], *, yes: bool, nothing: str) -> None:
    """Operators' clean-up of what the config no longer names (``events prune``, ``ledger
    forget``): ``lines`` lists (or, with --yes, deletes) one item per line as it goes;
    Redis trouble ends the command with exit 75."""
    shown = 0
    try:
        for line in lines:
            click.echo(line)
            shown += 1
    except IngestError as err:
        click.echo(f"{what}: {err}", err=True)
        sys.exit(EX_TEMPFAIL)
    if not shown:
        click.echo(nothing, err=True)
    elif not yes:
        click.echo("run again with --yes to delete them", err=True)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False),
    help=f"YAML configuration file (default: ${CONFIG_ENV}).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Log verbosity.",
)
@click.option(
    "--log-json/--log-pretty",
    default=None,
    help="Log format (default: JSON unless stderr is a terminal).",
)
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str, log_json: bool | None) -> None:
    """Pull mail out of POP3 mailboxes into S3-compatible storage, exactly once."""
    allocator.tune()
    logs.configure(log_level, json=log_json)
    ctx.obj = CliContext(config)


@main.command()
@click.argument("names", nargs=-1)
@click.option(
    "--logins", default=8, show_default=True, type=click.IntRange(1, 64),
    help="Accounts logged in to at once.",
)  # fmt: skip
@click.pass_obj
def check(obj: CliContext, names: tuple[str, ...], logins: int) -> None:
    """Validate the config and reach Redis, the store, every event sink and the NAMES
    accounts (default: all), one line each.

    Checks Redis's maxmemory-policy (noeviction expected), writes a probe object twice
    (create-only writes and checksums must be honoured), probes each event sink without
    sending an event (a webhook: HEAD over its TLS settings; a stream: its key's type) and
    logs in to each account without changing its mailbox, --logins at a time, reported in
    the order named (config order by default). Exit status: 0 all ok, 1 a problem, 78
    config error.
    """
    from ingest.checks import run_checks  # noqa: PLC0415 - keeps `ingest --help` fast

    settings = obj.settings()
    chosen = [settings.account(n).name for n in names]
    failures = 0
    for ok, line in run_checks(settings, chosen, logins):
        click.echo(f"{'ok  ' if ok else 'FAIL'}  {line}")
        failures += not ok
    if failures:
        click.echo(f"{failures} problem(s) found", err=True)
        sys.exit(1)


@main.command(name="poll")
@click.argument("name")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Draw a progress bar (messages stored of those to fetch) on stderr "
    "(default: only when stderr is a terminal).",
)
@click.pass_obj
def poll_cmd(obj: CliContext, name: str, progress: bool | None) -> None:
    """Poll account NAME once, synchronously, through the same code the workers run.

    Exit status: 0 when the poll completed, 75 when another poll holds the account's lock
    (or the server's LOGIN-DELAY since the last login has not passed),
    78 on a configuration error, 1 on any other failure (including a poll that quarantined
    a message it had retrieved, and so could not commit).
    """
    from ingest.service import poll_account  # noqa: PLC0415

    settings = obj.settings()
    gc.freeze()  # start-up's objects live to the end: the collector need not walk them again
    shown = sys.stderr.isatty() if progress is None else progress
    try:
        with _progress_hook(f"polling {name}", shown) as hook:
            report: PollReport = poll_account(settings, settings.account(name).name, progress=hook)
    except ConfigError as err:
        click.echo(f"config error: {err}", err=True)
        sys.exit(EX_CONFIG)
    except IngestError as err:
        click.echo(f"{name}: failed: {err}", err=True)
        sys.exit(1)
    click.echo(report.summary())
    if report.outcome in ("busy", "deferred"):
        sys.exit(EX_TEMPFAIL)
    if report.outcome != "ok":
        sys.exit(1)


@contextmanager
def _progress_hook(label: str, shown: bool) -> Iterator[ProgressHook | None]:
    """A progress bar's hook, or None when no bar is drawn (rich is then not even imported)."""
    if not shown:
        yield None
        return
    from ingest.progress import progress_bar  # noqa: PLC0415

    with progress_bar(label, shown) as hook:
        yield hook


def _celery(obj: CliContext, args: list[str]) -> None:
    settings = obj.settings()  # fail fast, with the config errors printed, before exec
    env = dict(os.environ)
    if obj.config:
        env[CONFIG_ENV] = str(Path(obj.config).resolve())
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", *args]
    click.echo(f"starting celery for {len(settings.accounts)} account(s)", err=True)
    os.execve(sys.executable, argv, env)  # noqa: S606 - replaces this process, fixed argv


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def worker(obj: CliContext, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker (extra arguments go to `celery worker`).

    For example `ingest worker --concurrency 4`. Run as many as needed. A worker refuses
    to start when Redis evicts keys or the store ignores create-only writes, and reloads
    accounts (accounts_dir included) when their files change.
    """
    _celery(obj, ["worker", "--loglevel", "INFO", *celery_args])


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def beat(obj: CliContext, celery_args: tuple[str, ...]) -> None:
    """Run Celery beat, the dispatcher of due accounts (run one).

    Extra arguments go to `celery beat`. A second beat is harmless (the claim of due
    accounts is atomic), but one is the design.
    """
    _celery(obj, ["beat", "--loglevel", "INFO", *celery_args])


@main.command()
@click.argument("name")
@click.option(
    "--sha",
    "shas",
    multiple=True,
    metavar="SHA256",
    help="Only the message with this sha256 (repeatable; default: every raw message).",
)
@click.pass_obj
def reparse(obj: CliContext, name: str, shas: tuple[str, ...]) -> None:
    """Rebuild the JSON documents of account NAME from the stored raw messages.

    Documents are replaced only where the rebuilt one differs (after a parser upgrade, say).
    A progress bar is drawn when stderr is a terminal. Exit status: 0, 1 if any failed.
    """
    from rich.progress import Progress  # noqa: PLC0415

    from ingest.account_store import account_store  # noqa: PLC0415
    from ingest.reparse import raw_keys  # noqa: PLC0415
    from ingest.reparse import reparse as run  # noqa: PLC0415
    from ingest.service import redis_client  # noqa: PLC0415
    from ingest.store import open_store  # noqa: PLC0415

    settings = obj.settings()
    settings.account(name)
    store = account_store(open_store(settings.storage), settings, name)
    todo = raw_keys(store, settings, name)
    if shas:
        todo = [k for k in todo if any(k.endswith(f"/{s}.eml") for s in shas)]
    with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"reparsing {name}", total=len(todo))
        report = run(
            settings, name, store, redis_client(settings), todo, progress=lambda: bar.advance(task)
        )
    click.echo(
        f"{name}: {report.seen} raw message(s): {report.rewritten} document(s) "
        f"rewritten, {report.unchanged} unchanged, {report.failed} failed"
    )
    if report.failed:
        sys.exit(1)


# Command groups kept in their own modules register themselves on ``main`` when imported
# (each module: ``from ingest.cli import CliContext, main`` then ``@main.command()``).
# One import line per module, below.
import ingest.cli_archive  # noqa: E402 - search, export, verify, index
import ingest.cli_completion  # noqa: E402 - `ingest completion bash|zsh|fish`
import ingest.cli_events  # noqa: E402
import ingest.cli_ledger  # noqa: E402 - `ingest ledger show|forget`
import ingest.cli_quarantine  # noqa: E402 - `ingest quarantine list|retry`
import ingest.cli_status  # noqa: E402, F401 - `ingest status`, `ingest accounts`
from ingest import cli_health  # noqa: E402, F401  - ingest health, ingest metrics serve

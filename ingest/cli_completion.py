"""``ingest completion SHELL``: print click's shell completion script for bash, zsh or fish."""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem, get_completion_class

from ingest.cli import main
from ingest.config_load import load_settings
from ingest.errors import ConfigError

PROG = "ingest"
COMPLETE_VAR = "_INGEST_COMPLETE"


def completion_script(shell: str) -> str:
    """The completion script click generates for ``ingest`` in ``shell``."""
    cls = get_completion_class(shell)
    if cls is None:  # pragma: no cover - the Choice below only offers known shells
        raise click.UsageError(f"no completion for {shell}")
    return cls(main, {}, PROG, COMPLETE_VAR).source()


def account_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Completes an account NAME from the configuration (nothing when it cannot be read)."""
    config = ctx.find_root().params.get("config")
    try:
        settings = load_settings(config)
    except ConfigError:
        return []
    return [CompletionItem(a.name) for a in settings.accounts if a.name.startswith(incomplete)]


@main.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (commands, options, choices).

    \b
    bash:  eval "$(ingest completion bash)"     (e.g. in ~/.bashrc)
    zsh:   eval "$(ingest completion zsh)"      (e.g. in ~/.zshrc)
    fish:  ingest completion fish > ~/.config/fish/completions/ingest.fish
    """
    click.echo(completion_script(shell))

"""A progress bar on stderr for long commands (``poll`` of a big mailbox), as a plain hook."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar(label: str, show: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """Yield a ``(done, total)`` hook drawing a bar; ``show`` None: only on a terminal."""
    shown = sys.stderr.isatty() if show is None else show
    console = Console(stderr=True, force_terminal=shown or None)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, disable=not shown) as bar:
        task = bar.add_task(label, total=None)

        def hook(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield hook

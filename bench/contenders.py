"""What is measured: a contender builds, per run, the command to time and the checks after it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.corpus import Corpus
from bench.measure import Timed


def _no_check(_: Timed) -> list[str]:
    return []


@dataclass(frozen=True)
class Job:
    """One timed run: the command, its environment, and what must hold afterwards.

    ``check`` returns the problems it found (empty: the run was correct).
    """

    argv: list[str]
    env: dict[str, str] | None = None
    check: Callable[[Timed], list[str]] = _no_check
    cleanup: Callable[[], None] = field(default=lambda: None)


@dataclass(frozen=True)
class Contender:
    """A client under test: a peer (keeps mail) or our pipeline (deletes it)."""

    name: str
    kind: str  # "peer" or "ours"
    deletes: bool
    prepare: Callable[[int, Corpus], Job]  # (POP3 port, corpus) -> the run's job

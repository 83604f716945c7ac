"""Deterministic benchmark corpora (the peers' gen_corpus.py) and the mailbox that serves them.

A corpus is one or more template Maildirs made by ``gen_corpus.py`` (same mix and seeds as
the peer measurements) and cached under ``OUT/corpus``: a ``corpus.json`` stamp makes a re-run
with the same options a no-op. :class:`Mailbox` copies a corpus into a Dovecot user's Maildir
whenever a delete-mode run has emptied it, then makes one untimed stdlib-poplib RETR pass,
so every timed run, ours and the peers', starts from the same state: Dovecot's index built,
messages ``\\Seen`` (in ``cur/``), page cache warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import Dovecot, as_pop3

PEERS_DIR = Path(
    os.environ.get(
        "INGEST_BENCH_PEERS",
        Path(__file__).resolve().parent.parent.parent / "shared" / "bench-peers",
    )
)
MIX = "text=70,html=20,attach=10"  # the peers' default mix: 70% text, 20% HTML, 10% large


@dataclass(frozen=True)
class Part:
    """One ``gen_corpus.py`` invocation: a template Maildir of ``count`` messages."""

    count: int
    seed: int
    mix: str = MIX
    attach_kb: str = "500-3000"
    html_kb: str = "30-200"

    def argv(self, maildir: Path) -> list[str]:
        return [
            sys.executable, str(PEERS_DIR / "gen_corpus.py"), "--maildir", str(maildir),
            "--count", str(self.count), "--seed", str(self.seed), "--mix", self.mix,
            "--attach-kb", self.attach_kb, "--html-kb", self.html_kb, "--owner", "none",
        ]  # fmt: skip


@dataclass
class Corpus:
    """A named set of messages; ``files`` and ``sha256s`` are filled by :meth:`build`."""

    name: str
    parts: tuple[Part, ...]
    files: list[Path] = field(default_factory=list)
    sha256s: set[str] = field(default_factory=set)  # of each message as RETR returns it
    wire_bytes: int = 0  # RFC 1939 octets (CRLF form), as LIST counts them
    largest: int = 0

    @property
    def count(self) -> int:
        return len(self.files)

    def build(self, cache: Path) -> Corpus:
        """Generate (or reuse) the template Maildirs and learn each message's digest."""
        for part in self.parts:
            maildir = cache / f"{self.name}-n{part.count}-s{part.seed}" / "Maildir"
            subprocess.run(part.argv(maildir), check=True, capture_output=True)
            self.files += sorted((maildir / "new").iterdir())
        for path in self.files:
            pop3 = as_pop3(path.read_bytes())
            self.sha256s.add(hashlib.sha256(pop3).hexdigest())
            self.wire_bytes += len(pop3)
            self.largest = max(self.largest, len(pop3))
        if len(self.sha256s) != self.count:
            raise RuntimeError(f"corpus {self.name}: messages are not all distinct")
        return self

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "count": self.count,
            "wire_bytes": self.wire_bytes,
            "largest_bytes": self.largest,
            "parts": [part.__dict__ for part in self.parts],
        }


SMALL_MIX = "text=90,html=10,attach=0"  # small messages only: 2-10 KB text, 30-60 KB HTML


def scale_counts(quick: bool) -> tuple[int, int]:
    """Mailbox sizes of the ``rss`` section (issue 6, target 3b: 2,000 vs 20,000)."""
    return (300, 3000) if quick else (2000, 20000)


def corpora(quick: bool, sections: set[str] | None = None) -> dict[str, Corpus]:
    """The corpora of one benchmark run: ``main``, ``memory``, ``latency`` and ``empty``,
    and, when the ``rss`` section runs, ``rss-small`` and ``rss-large``."""
    big_kb = (60 if quick else 200) * 1024
    scale: dict[str, Corpus] = {}
    if sections is None or "rss" in sections:
        small, large = scale_counts(quick)
        part = Part(0, seed=11, mix=SMALL_MIX, html_kb="30-60")
        scale = {
            "rss-small": Corpus("rss-small", (replace(part, count=small),)),
            "rss-large": Corpus("rss-large", (replace(part, count=large),)),
        }
    return scale | {
        "empty": Corpus("empty", ()),  # fixed cost: start-up, login, UIDL, QUIT
        "main": Corpus("main", (Part(300 if quick else 2000, seed=1),)),
        "memory": Corpus(
            "memory",
            (
                Part(1, seed=7, mix="text=0,html=0,attach=100", attach_kb=f"{big_kb}-{big_kb}"),
                Part(49, seed=8, mix="text=100,html=0,attach=0"),
            ),
        ),
        "latency": Corpus("latency", (Part(100 if quick else 500, seed=3),)),
    }


class Mailbox:
    """The one Dovecot user every contender reads, refilled from a corpus when needed."""

    def __init__(self, dovecot: Dovecot, user: str, password: str) -> None:
        self.dovecot = dovecot
        self.user = user
        self.password = password
        self.holds: str | None = None  # name of the corpus it holds, warm, in full

    def ensure(self, corpus: Corpus) -> None:
        """Make the mailbox hold exactly ``corpus``, indexed, read once (untimed)."""
        if self.holds == corpus.name:
            return
        shutil.rmtree(self.dovecot.home(self.user) / "Maildir", ignore_errors=True)
        self.dovecot.maildir(self.user)  # new/, cur/, tmp/, owned by the mail user
        for path in corpus.files:
            self.dovecot.deliver(self.user, path.read_bytes(), name=path.name)
        self.warm()
        self.holds = corpus.name

    def emptied(self) -> None:
        """A delete-mode run (or a failed one) changed the mailbox: refill before the next."""
        self.holds = None

    def warm(self) -> None:
        out = subprocess.run(
            [*probe_argv("poplib", self.dovecot.pop3_port, self.user, self.password)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        json.loads(out.strip().splitlines()[-1])

    def count(self) -> int:
        return self.dovecot.message_count(self.user)


def probe_argv(mode: str, port: int, user: str, password: str, *extra: str) -> list[str]:
    """``pop3probe.py`` (the peers' reference clients) against ``127.0.0.1:port``."""
    return [
        sys.executable, str(PEERS_DIR / "pop3probe.py"), "--mode", mode, "--user", user,
        "--password", password, "--port", str(port), *extra,
    ]  # fmt: skip

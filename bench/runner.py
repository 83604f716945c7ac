"""One benchmark run's shared state, and the loop that times each contender once per round."""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.contenders import Contender
from bench.corpus import Corpus, Mailbox
from bench.measure import Session, children_cpu, dovecot_session, run_timed
from bench.report import Row, Run, summarize
from harness import Dovecot


@dataclass
class Bench:
    """Everything one benchmark run shares: servers, mailbox, contenders, results."""

    args: argparse.Namespace
    scratch: Path
    dovecot: Dovecot
    mailbox: Mailbox
    corpora: dict[str, Corpus]
    runs: list[Run] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    meta: dict[str, object] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # sections with their own report

    def run_one(
        self, section: str, contender: Contender, corpus: Corpus, port: int, *, rep: int, warm: bool
    ) -> Run:
        self.mailbox.ensure(corpus)
        job = contender.prepare(port, corpus)
        offset = self.dovecot.log_path.stat().st_size
        cpu0 = children_cpu(self.dovecot.pid)
        slug = re.sub(r"[^a-z0-9]+", "-", contender.name.lower()).strip("-")
        log = self.scratch / "logs" / f"{section}-{slug}-{rep}.log"
        timed = run_timed(job.argv, self.scratch, env=job.env, log=log)
        session = dovecot_session(self.dovecot.log_path, offset, self.mailbox.user)
        time.sleep(0.1)  # let the master reap the pop3 process before reading its CPU
        found = [] if timed.rc == 0 else [f"exit {timed.rc}: {timed.stderr_tail[-300:]}"]
        found += session_problems(session, corpus.count, deletes=contender.deletes)
        found += job.check(timed)
        if contender.deletes or found:
            self.mailbox.emptied()
        job.cleanup()
        run = Run(
            section, contender.name, contender.kind, rep, warm, timed.wall_s, timed.user_s,
            timed.sys_s, timed.maxrss_kb, children_cpu(self.dovecot.pid) - cpu0, timed.rc,
            found, job.argv, asdict(session) if session else None,
        )  # fmt: skip
        status = "ok" if run.ok else "FAIL " + "; ".join(found)
        say(
            f"[{section}] {'warm-up' if warm else f'run {rep}'} {contender.name:34} "
            f"{run.wall_s:7.2f}s  rss {run.maxrss_kb / 1024:6.1f} MiB  {status}"
        )
        return run

    def section(
        self, name: str, corpus: Corpus, contenders: list[Contender], port: int, reps: int
    ) -> list[Row]:
        warmup = self.args.warmup
        for rep in range(warmup + reps):
            for contender in contenders:
                run = self.run_one(name, contender, corpus, port, rep=rep, warm=rep < warmup)
                self.runs.append(run)
                if not run.ok and contender.kind == "peer":  # a peer's flake: one more try
                    run = self.run_one(name, contender, corpus, port, rep=rep, warm=rep < warmup)
                    self.runs.append(run)
        rows = summarize(self.runs, name, corpus.count, corpus.wire_bytes)
        self.rows += rows
        return rows


def session_problems(session: Session | None, expect: int, *, deletes: bool) -> list[str]:
    """What Dovecot's own log says against what the run should have done."""
    if session is None:
        return ["no Dovecot session log line"]
    if session.retr != expect:
        return [f"Dovecot says retr={session.retr}, expected {expect}"]
    if deletes and session.dele != expect:
        return [f"Dovecot says del={session.dele}, expected {expect}"]
    return []


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

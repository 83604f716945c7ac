"""Where an ``ingest poll`` spends its time: extra, untimed runs under cProfile and py-spy.

Each run is the same as a timed ``ours -> directory`` run (same corpus, fresh ledger and
store, delete mode, checked afterwards), started as ``python -m cProfile -o FILE -m ingest
...`` and, when py-spy is installed (on PATH or named by ``$INGEST_BENCH_PYSPY``; ``pip
install py-spy``), as ``py-spy record --gil --nonblocking -f raw -- ingest ...``. cProfile
sees only the main thread and slows pure-Python code more than C code; py-spy samples every
thread with little slow-down, so prefer its shares.
Writes ``OUT/profile/ingest-poll.{pstats,txt}`` and ``ingest-poll.pyspy.{raw,txt}``.
"""

from __future__ import annotations

import io
import os
import pstats
import re
import shutil
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.corpus import Corpus
from bench.measure import Timed, run_timed
from bench.ours import INGEST, Ours

if TYPE_CHECKING:
    from bench.runner import Bench

_LINE = re.compile(r":\d+\)$")


def _profiled(
    bench: Bench, ours: Ours, corpus: Corpus, wrap: Callable[[list[str]], list[str]]
) -> tuple[Timed, list[str]]:
    """One checked ``ingest poll`` of ``corpus`` into a directory, its argv passed to ``wrap``."""
    bench.mailbox.ensure(corpus)
    job = ours.directory().prepare(bench.dovecot.pop3_port, corpus)
    if job.argv[0] != INGEST:
        raise RuntimeError(f"unexpected command {job.argv}")
    timed = run_timed(wrap(job.argv), bench.scratch, log=bench.scratch / "logs" / "profile.log")
    found = job.check(timed)
    bench.mailbox.emptied()
    job.cleanup()
    return timed, found


def _cprofile(bench: Bench, ours: Ours, corpus: Corpus, out: Path, top: int) -> str:
    prof = out / "ingest-poll.pstats"
    timed, found = _profiled(
        bench,
        ours,
        corpus,
        lambda argv: [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "ingest", *argv[1:]],
    )
    text = io.StringIO()
    text.write(f"ingest poll of {corpus.count} messages under cProfile: {timed.wall_s:.2f} s")
    text.write(f" wall; checks: {'; '.join(found) or 'ok'}\n")
    for order in ("tottime", "cumulative"):
        text.write(f"\n=== top {top} by {order} ===\n")
        pstats.Stats(str(prof), stream=text).sort_stats(order).print_stats(top)
    (out / "ingest-poll.txt").write_text(text.getvalue())
    return text.getvalue().splitlines()[0]


def pyspy_shares(raw: str, top: int) -> list[str]:
    """Inclusive shares of the ``ingest`` functions and own shares of all, from raw stacks.

    The stacks are recorded with ``--gil``: each sample is the thread that held the GIL, so
    the shares say where the interpreter's time goes across all threads (waits in fsync or
    on a socket, outside the GIL, are not in them: compare the wall and CPU columns).
    """
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if "(ingest/" in frame or frame.endswith("(ingest)"):
                inclusive[frame] += int(count)
    if not total:
        return ["no samples"]
    out = [f"{total} samples (GIL holder)", "", f"inclusive, ingest/ functions (top {top}):"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", f"own time, any function (top {top}):"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    return out


def _pyspy(bench: Bench, ours: Ours, corpus: Corpus, out: Path, top: int) -> str | None:
    pyspy = os.environ.get("INGEST_BENCH_PYSPY") or shutil.which("py-spy")
    if not pyspy:
        return None
    raw = out / "ingest-poll.pyspy.raw"
    record = [
        pyspy, "record", "--gil", "--nonblocking", "--rate", "250", "--format", "raw",
        "--output", str(raw), "--",
    ]  # fmt: skip
    timed, found = _profiled(bench, ours, corpus, lambda argv: [*record, *argv])
    head = (
        f"ingest poll of {corpus.count} messages under py-spy: {timed.wall_s:.2f} s wall; "
        f"checks: {'; '.join(found) or 'ok'}"
    )
    body = pyspy_shares(raw.read_text() if raw.exists() else "", top)
    (out / "ingest-poll.pyspy.txt").write_text("\n".join([head, *body]) + "\n")
    return head


def profile_poll(bench: Bench, ours: Ours, corpus: Corpus, out: Path, top: int = 30) -> str:
    """Profile one poll of ``corpus`` into a directory store; returns where the reports are."""
    out.mkdir(parents=True, exist_ok=True)
    heads = [_cprofile(bench, ours, corpus, out, top)]
    spied = _pyspy(bench, ours, corpus, out, top)
    heads.append(spied or "py-spy not installed (pip install py-spy), skipped")
    return f"{out}: " + " | ".join(heads)

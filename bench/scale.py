"""Section ``rss`` (issue 6, target 3b): peak RSS of ``ingest poll`` must not grow with the
number of messages in the mailbox (2,000 vs 20,000 small messages: less than 20% apart)."""

from __future__ import annotations

from bench.ours import Ours
from bench.report import Row, Target
from bench.runner import Bench

RSS_GROWTH_LIMIT = 1.2


def rss_section(bench: Bench, ours: Ours) -> Target:
    """One checked delete-mode poll of each mailbox size; the ratio of their peak RSS."""
    rows: list[Row] = []
    warmup, bench.args.warmup = bench.args.warmup, 0  # peak RSS needs no warm page cache
    try:
        for name in ("rss-small", "rss-large"):
            corpus = bench.corpora[name]
            rows += bench.section(name, corpus, [ours.directory()], bench.dovecot.pop3_port, 1)
    finally:
        bench.args.warmup = warmup
    small, large = rows
    ratio = large.rss_max_mib / small.rss_max_mib if small.valid and large.valid else None
    detail = (
        f"peak RSS of ingest poll, {large.n} vs {small.n} messages "
        f"({large.rss_max_mib:.0f} vs {small.rss_max_mib:.0f} MiB)"
    )
    return Target("RSS vs mailbox size", ratio, RSS_GROWTH_LIMIT, "x", detail)

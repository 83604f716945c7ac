"""``make bench`` / ``make bench-full``: our pipeline against the peers, on one private Dovecot.

    .venv/bin/python -m bench.run --quick     # ~2-3 min: 300 messages, 60 MB message
    .venv/bin/python -m bench.run --full      # 2,000 messages, 200 MB message, 500 via proxy
    .venv/bin/python -m bench.run --quick --profile   # + a cProfile of one ingest poll

Starts its own Dovecot, Redis and moto S3 on free loopback ports (stopped by PID), builds
the corpora deterministically with the peers' ``gen_corpus.py`` (same mix and seeds), and
times, on the same mailbox in the same run, round-robin: the baselines (stdlib poplib
lock-step, the pipelined probe, getmail6, fetchmail) and ``ingest poll`` (the real CLI, delete
mode) into a local directory and into S3. Every run is checked; a wrong run is a failure.
Prints one Markdown report on stdout and writes it, with every run, to ``OUT/bench-MODE.md``
and ``OUT/bench-MODE.json``. Exit status 1 if any run of ours failed its checks (or a peer
never succeeded); a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import compileall
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

from bench.accounts import accounts_lines, accounts_section
from bench.corpus import PEERS_DIR, Mailbox, corpora
from bench.kept import kept_section, kept_table
from bench.ours import Ours
from bench.profile import profile_poll
from bench.report import MB, Target, problems, table
from bench.report import targets_table as render_targets
from bench.runner import Bench, say
from bench.scale import rss_section
from bench.sections import (
    BUCKET,
    fixed_cost_section,
    latency_section,
    main_section,
    memory_section,
    targets,
)
from harness import Dovecot, MotoS3, RedisServer

ROOT = Path(__file__).resolve().parent.parent


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def _git(*args: str) -> str:
    """Output of a read-only git command in the project, or "" if git fails."""
    try:
        argv = ["git", "-C", str(ROOT), *args]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def machine() -> dict[str, object]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "?")
    rev = _git("rev-parse", "--short", "HEAD") or "?"
    dirty = bool(_git("status", "--porcelain", "--", "ingest", "workers"))
    return {
        "cpu": f"{os.cpu_count()} vCPU, {cpu}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dovecot": _version(["dovecot", "--version"]),
        "getmail6": _version(["getmail", "--version"]),
        "fetchmail": _version(["fetchmail", "--version"]).replace("This is ", ""),
        "ingest revision": rev + (" + uncommitted changes in ingest/ or workers/" if dirty else ""),
    }


def code_fingerprint() -> str:
    """SHA-256 over the product's source (``ingest/``, ``workers/``), to notice edits mid-run."""
    digest = hashlib.sha256()
    for path in sorted([*ROOT.glob("ingest/**/*.py"), *ROOT.glob("workers/**/*.py")]):
        digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def check_tools() -> None:
    missing = [t for t in ("getmail", "setpriv", "dovecot", "redis-server") if not shutil.which(t)]
    if not Path("/usr/bin/time").exists():
        missing.append("/usr/bin/time")
    if not (PEERS_DIR / "pop3probe.py").exists():
        sys.exit(f"bench: the peers' harness is not at {PEERS_DIR} (set INGEST_BENCH_PEERS)")
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)}; run scripts/bench-deps.sh")


def render(bench: Bench, goals: list[Target]) -> str:
    mode = "quick" if bench.args.quick else "full"
    lines = [f"# ingest benchmark ({mode})", ""]
    if bench.args.quick:
        lines += [
            "Quick mode: smaller corpora than issue 6 names (300 messages instead of 2,000, a "
            "60 MiB message instead of 200 MiB, 100 messages through the proxy instead of "
            "500); `make bench-full` runs the full sizes.",
            "",
        ]
    lines += [f"- {k}: {v}" for k, v in bench.meta.items()]
    lines += [
        "",
        "Wall = client process start to exit (start-up, login, QUIT included); median of "
        f"{bench.args.reps} timed runs, round-robin, after {bench.args.warmup} warm-up round(s). "
        "Peers keep the mail; ours stores raw + JSON, records the ledger and DELEs "
        "(mailbox refilled and read once, untimed, before each run). RSS from /usr/bin/time -v.",
        "",
        "## Targets (ratios from the same run)",
        "",
        *render_targets(goals),
    ]
    titles = {
        "loopback": "Loopback",
        "memory": "Memory: one large message among small ones",
        "latency": "Through delay_proxy.py (10 ms each way)",
        "empty": "Fixed cost (start-up, login, UIDL, QUIT): an empty mailbox",
        "rss-small": "Peak RSS vs mailbox size (small messages), smaller mailbox",
        "rss-large": "Peak RSS vs mailbox size (small messages), larger mailbox",
    }
    for section, title in titles.items():
        rows = [r for r in bench.rows if r.section == section]
        if rows:
            corpus = bench.corpora["main" if section == "loopback" else section]
            lines += ["", f"## {title}: {corpus.count} messages, {corpus.wire_bytes / MB:.1f} MB"]
            lines += ["", *table(rows)]
    if "accounts" in bench.extra:
        lines += ["", "## Many accounts through Celery (beat + 2 worker processes)", ""]
        lines += accounts_lines(bench.extra["accounts"])
    if "kept" in bench.extra:
        count = bench.extra["kept"]["count"]
        lines += ["", f"## Kept mailbox: {count} messages in the ledger, a poll finds none new"]
        lines += ["", *kept_table(bench.extra["kept"])]
    lines += problems(bench.rows)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", default=True, help="the default")
    mode.add_argument("--full", dest="quick", action="store_false")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--reps", type=int, default=3, help="timed runs per contender (3)")
    ap.add_argument("--warmup", type=int, help="untimed rounds first (quick 0, full 1)")
    ap.add_argument(
        "--sections",
        default="loopback,empty,memory,latency,rss,accounts,kept",
        help="comma list of: %(default)s",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile one ingest poll")
    ap.add_argument(
        "--profile-corpus",
        default="main",
        help="the corpus --profile polls: main (the default), rss-large, latency, ...",
    )
    ap.add_argument("--keep-scratch", action="store_true", help="keep logs, stores, configs")
    args = ap.parse_args(argv)
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    return args


def start(stack: ExitStack, scratch: Path) -> tuple[RedisServer, MotoS3, Dovecot]:
    redis_server = stack.enter_context(RedisServer(scratch / "redis"))
    moto = stack.enter_context(MotoS3(scratch / "moto"))
    moto.create_bucket(BUCKET)
    dovecot = stack.enter_context(Dovecot(scratch / "dovecot"))
    return redis_server, moto, dovecot


def scaling_sections(bench: Bench, ours: Ours, redis_url: str) -> list[Target]:
    """Targets 3b, 5 and 4 of issue 6: RSS vs mailbox size, a kept mailbox, many accounts."""
    sections = set(bench.args.sections.split(","))
    goals = []
    if "rss" in sections:
        goals.append(rss_section(bench, ours))
    if "kept" in sections:
        goals += kept_section(bench, ours, 20_000 if bench.args.quick else 100_000)
    if "accounts" in sections:
        goals += accounts_section(bench, redis_url)
    return goals


def compile_sources() -> None:
    """Byte-compile ingest/ and workers/ first, as ``pip install`` does for a deployed
    package: with the editable install and ``PYTHONDONTWRITEBYTECODE`` set, every ``ingest``
    process would otherwise compile our modules again at start-up (~50 ms each time)."""
    for package in ("ingest", "workers"):
        compileall.compile_dir(ROOT / package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()
    compile_sources()
    sections = set(args.sections.split(","))
    out: Path = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    say("building corpora (cached in OUT/corpus after the first run) ...")
    wanted = corpora(args.quick, sections)
    all_corpora = {k: c.build(out / "corpus") for k, c in wanted.items()}
    scratch = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    scratch.chmod(0o755)  # getmail runs as nobody; Dovecot's users must traverse it
    (scratch / "logs").mkdir()
    user, password = "bench", secrets.token_hex(12)
    goals: list[Target] = []
    t0 = time.monotonic()
    fingerprint = code_fingerprint()
    try:
        with ExitStack() as stack:
            redis_server, moto, dovecot = start(stack, scratch)
            dovecot.add_user(user, password)
            bench = Bench(args, scratch, dovecot, Mailbox(dovecot, user, password), all_corpora)
            bench.meta = {
                **machine(),
                "source fingerprint (ingest/, workers/)": fingerprint,
                "corpora": "; ".join(
                    f"{c.name}: {c.count} msgs, {c.wire_bytes / MB:.1f} MB"
                    for c in all_corpora.values()
                ),
            }
            ours = Ours(scratch, redis_server.url, bench.mailbox)
            if "loopback" in sections:
                main_section(bench, ours, moto, user, password)
            if "empty" in sections:
                fixed_cost_section(bench, ours, user, password)
            memory = memory_section(bench, ours) if "memory" in sections else None
            if "latency" in sections:
                latency_section(bench, ours, user, password)
            goals = targets(bench, memory) + scaling_sections(bench, ours, redis_server.url)
            if args.profile:
                bench.meta["profile"] = profile_poll(
                    bench, ours, all_corpora[args.profile_corpus], out / "profile"
                )
            bench.meta["bench wall s"] = round(time.monotonic() - t0, 1)
            if code_fingerprint() != fingerprint:
                bench.meta["WARNING"] = (
                    "ingest/ or workers/ changed during the run: the numbers mix code versions"
                )
    finally:
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            say(f"scratch kept: {scratch}")
    mode = "quick" if args.quick else "full"
    text = render(bench, goals)
    (out / f"bench-{mode}.md").write_text(text)
    result = {
        "mode": mode,
        "meta": bench.meta,
        "corpora": {k: c.describe() for k, c in all_corpora.items()},
        "targets": [t.as_dict() for t in goals],
        "rows": [{**asdict(r), "msg_s": r.msg_s, "mb_s": r.mb_s} for r in bench.rows],
        "extra": bench.extra,
        "runs": [asdict(r) for r in bench.runs],
    }
    (out / f"bench-{mode}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)
    say(f"written: {out / f'bench-{mode}.md'} and {out / f'bench-{mode}.json'}")
    failed = any(not r.ok for r in bench.runs if r.kind == "ours")
    return 1 if failed or not all(r.valid for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Section ``accounts`` (issue 6, target 4): many accounts on one Dovecot, real Celery.

N Dovecot users (200 quick, 1,000 full) with 3 small messages each; one config with N
accounts (``interval`` I, the default 5 s dispatch tick, a directory store); a real
``celery worker --concurrency 2`` (two pool processes) and ``celery beat``. Measured: the
time from beat's start until every mailbox is empty (first due times are spread over one
interval by design, so the goal is: all done by one interval plus one tick), the
dispatcher's own time per tick and per due account (from its ``dispatch.enqueued`` log
events), each account's delay from its claim to its poll's end, and every command clients
sent to Redis during the run (MONITOR; broker traffic included) per account.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis
import yaml

from bench.claims import claim_costs, config_costs
from bench.redis_count import CommandCounter
from bench.report import Target
from bench.runner import Bench, say
from harness.celery_procs import CeleryProcess
from ingest import keys

MESSAGES_PER_ACCOUNT = 3
DISPATCH_INTERVAL = 5.0  # the default


@dataclass(frozen=True)
class AccountsResult:
    """What one many-accounts run measured."""

    accounts: int
    interval: float
    all_done_s: float | None
    ticks: int
    dispatch_s_total: float
    dispatch_s_max_tick: float
    dispatch_us_per_account: float
    claim_to_done_median_s: float
    claim_to_done_max_s: float
    polls: int
    redis_commands: int
    redis_per_account: float
    redis_detail: str
    worker_rss_mib: float
    problems: list[str]
    done_after_sync_s: float | None = None  # from the first tick that wrote the table
    claims: tuple[dict[str, float], ...] = ()
    config_loads: tuple[dict[str, float], ...] = ()


def sizes(quick: bool) -> tuple[int, float]:
    """(accounts, interval seconds) of the section."""
    return (200, 20.0) if quick else (1000, 120.0)


def message(user: str, n: int) -> bytes:
    return (
        f"From: a@example.com\nTo: {user}@example.com\nSubject: hello {n}\n"
        f"Message-ID: <{user}-{n}@bench.invalid>\n\nmessage {n} for {user}\n"
    ).encode()


def make_users(bench: Bench, count: int, password: str) -> list[str]:
    users = [f"many{i:04d}" for i in range(count)]
    for user in users:
        bench.dovecot.add_user(user, password)
        for n in range(MESSAGES_PER_ACCOUNT):
            bench.dovecot.deliver(user, message(user, n))
    return users


def write_config(bench: Bench, redis_url: str, users: list[str], interval: float) -> Path:
    secret = bench.scratch / "many-password"
    data = {
        "redis_url": redis_url,
        "storage": {"url": f"file://{bench.scratch / 'many-store'}"},
        "dispatch_interval": DISPATCH_INTERVAL,
        "accounts": [
            {
                "name": f"m{user[4:]}",
                "host": "127.0.0.1",
                "port": bench.dovecot.pop3_port,
                "security": "plain",
                "allow_plaintext": True,
                "allow_private_network": True,
                "username": user,
                "password_file": str(secret),
                "delete": "after_store",
                "interval": int(interval),
            }
            for user in users
        ],
    }
    path = bench.scratch / "many.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def wait_consuming(client: redis.Redis, worker: CeleryProcess, timeout: float = 60) -> None:
    """Until a worker connection blocks in BRPOP (the pool is consuming the queue)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.get("cmd") == "brpop" for c in client.client_list()):
            return
        if not worker.alive():
            break
        time.sleep(0.2)
    raise RuntimeError(f"the celery worker did not start; see {worker.log_path}")


def _events(log: Path, name: str) -> list[dict[str, object]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if f'"{name}"' in line and "{" in line:
            try:
                out.append(json.loads(line[line.index("{") :]))
            except ValueError:
                continue
    return out


def claim_to_done(client: redis.Redis, names: list[str], interval: float) -> list[float]:
    """Per account: seconds from its last claim (its due score minus the interval) to the
    end of its last poll."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.zscore(keys.SCHEDULE_KEY, name)
        pipe.hget(keys.last_poll_key(name), "finished")
    values = pipe.execute()
    out = []
    for score, finished in zip(values[::2], values[1::2], strict=True):
        if score is not None and finished is not None:
            out.append(float(json.loads(finished)) - (float(score) - interval))
    return out


def _rss_mib(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(int(x.split()[1]) for x in text.splitlines() if x.startswith("VmRSS:"))
    return total / 1024


def _pids(root: int) -> set[int]:
    argv = ["ps", "-o", "pid=", "--ppid", str(root)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    return {root, *(int(p) for p in out.stdout.split())}


def run_accounts(bench: Bench, redis_url: str, count: int, interval: float) -> AccountsResult:
    password = "many-" + os.urandom(6).hex()
    t0 = time.monotonic()
    users = make_users(bench, count, password)
    (bench.scratch / "many-password").write_text(password)
    config = write_config(bench, redis_url, users, interval)
    names = [f"m{u[4:]}" for u in users]
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    took = time.monotonic() - t0
    say(f"[accounts] {count} users with {MESSAGES_PER_ACCOUNT} messages each ({took:.0f} s)")
    logs = bench.scratch / "logs"
    worker = CeleryProcess("worker", config, logs / "many-worker.log", "--concurrency", "2")
    beat = CeleryProcess("beat", config, logs / "many-beat.log")
    problems: list[str] = []
    rss = 0.0
    with worker:
        wait_consuming(client, worker)
        with CommandCounter(redis_url) as counter, beat:
            start = time.monotonic()
            done_at = synced = None
            deadline = start + interval * 2 + 120
            while time.monotonic() < deadline:
                if synced is None and client.exists(keys.SCHEDULE_DIGEST_KEY):
                    synced = time.monotonic()
                if all(bench.dovecot.message_count(u) == 0 for u in users):
                    done_at = time.monotonic() - start
                    break
                rss = max(rss, _rss_mib(_pids(worker.pid)))
                time.sleep(1.0)
            if done_at is None:
                left = sum(1 for u in users if bench.dovecot.message_count(u))
                problems.append(f"{left} mailboxes not emptied in {deadline - start:.0f} s")
    ticks = _events(worker.log_path, "dispatch.enqueued")
    polls = len(_events(worker.log_path, "poll.finished"))
    spent = [float(e["seconds"]) for e in ticks]  # type: ignore[arg-type]
    dispatched = sum(int(e["accounts"]) for e in ticks)  # type: ignore[call-overload]
    lags = claim_to_done(client, names, interval)
    stored = sum(1 for _ in (bench.scratch / "many-store").rglob("*.eml"))
    if stored != count * MESSAGES_PER_ACCOUNT:
        problems.append(f"{stored} raw objects stored, expected {count * MESSAGES_PER_ACCOUNT}")
    if "Traceback" in worker.log_path.read_text(errors="replace"):
        problems.append("a traceback in the worker log")
    after_sync = None if done_at is None or synced is None else start + done_at - synced
    return AccountsResult(
        count, interval, done_at, len(ticks), sum(spent), max(spent, default=0.0),
        1e6 * sum(spent) / dispatched if dispatched else float("nan"),
        statistics.median(lags) if lags else float("nan"), max(lags, default=float("nan")),
        polls, counter.total, counter.total / count, counter.describe(), rss, problems,
        after_sync, tuple(claim_costs(redis_url)),
        tuple(config_costs(bench.scratch, (1000, 10_000 if bench.args.quick else 100_000))),
    )  # fmt: skip


def accounts_section(bench: Bench, redis_url: str) -> list[Target]:
    count, interval = sizes(bench.args.quick)
    result = run_accounts(bench, redis_url, count, interval)
    bench.extra["accounts"] = asdict(result)
    say(f"[accounts] {json.dumps(asdict(result))}")
    ok = not result.problems
    budget = interval + DISPATCH_INTERVAL
    return [
        Target(
            f"{count} accounts, 2 worker processes: all ingested",
            result.done_after_sync_s / budget if ok and result.done_after_sync_s else None,
            1.0, "x",
            f"time from the first tick to every mailbox empty / (interval {interval:.0f} s + "
            f"one {DISPATCH_INTERVAL:.0f} s tick)",
        ),
        Target(
            "dispatcher time per due account", result.dispatch_us_per_account if ok else None,
            1000.0, " us", "claim + publish, from the dispatch task's own timing",
        ),
    ]  # fmt: skip


def accounts_lines(data: dict[str, object]) -> list[str]:
    d = data
    done = d["all_done_s"]
    return [
        f"- {d['accounts']} accounts x {MESSAGES_PER_ACCOUNT} messages, interval "
        f"{d['interval']:.0f} s, dispatch tick {DISPATCH_INTERVAL:.0f} s, 2 worker processes",
        f"- every mailbox empty after: {'never' if done is None else f'{done:.1f} s'} "
        f"from beat's start, {d['done_after_sync_s'] or float('nan'):.1f} s from the first tick "
        "(the one that wrote the schedule)",
        f"- dispatcher: {d['ticks']} ticks with due accounts, {d['dispatch_s_total']:.3f} s "
        "in all, "
        f"longest tick {d['dispatch_s_max_tick'] * 1000:.1f} ms, "
        f"{d['dispatch_us_per_account']:.0f} us per dispatched account",
        f"- claim -> poll finished, per account: median {d['claim_to_done_median_s']:.2f} s, "
        f"max {d['claim_to_done_max_s']:.2f} s",
        f"- polls run: {d['polls']} (an account due again before the last one finished is "
        "polled again)",
        f"- Redis: {d['redis_commands']} client commands in all, "
        f"{d['redis_per_account']:.1f} per account (broker included): {d['redis_detail']}",
        f"- worker RSS (main + pool processes): peak {d['worker_rss_mib']:.0f} MiB",
        *(
            f"- claim alone (bench.claims, no Celery), {c['accounts']:,} accounts in the table: "
            f"empty tick {c['idle_tick_us']:.0f} us, {c['claimed']:.0f} due accounts claimed at "
            f"{c['claim_us_per_account']:.1f} us each (one round trip per claim)"
            for c in d["claims"]  # type: ignore[attr-defined]
        ),
        *(
            f"- config load (bench.claims), {c['accounts']:,} accounts: {c['seconds']:.2f} s, "
            f"{c['us_per_account']:.0f} us per account; the same file as JSON: "
            f"{c['json_seconds']:.2f} s, {c['json_us_per_account']:.0f} us per account"
            for c in d.get("config_loads", ())  # type: ignore[attr-defined]
        ),
        *(f"- PROBLEM: {p}" for p in d["problems"]),  # type: ignore[attr-defined]
    ]  # fmt: skip

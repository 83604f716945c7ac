"""Chaos soak: SIGKILL real workers and `ingest poll` processes at random, then check invariants.

Duration per test comes from INGEST_SOAK_SECONDS (default 12 s in `make test`;
`make soak DURATION=600` runs longer). The random seed is printed so a failure can be replayed
with INGEST_SOAK_SEED.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import (
    ROOT,
    account_entry,
    bucket_objects,
    password_env,
    poll_until_unlocked,
    run_cli,
    split_objects,
    wait_until,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, as_pop3, corpus_files
from harness.celery_procs import CeleryProcess
from harness.pop3_proxy import Action, Fault, Pop3FaultProxy
from harness.process import descendants, pid_alive

SECONDS = float(os.environ.get("INGEST_SOAK_SECONDS", "12"))
SEED = int(os.environ.get("INGEST_SOAK_SEED", str(random.SystemRandom().randrange(10**6))))


class Mail:
    """What was delivered to which account, to check the bucket against."""

    def __init__(self, dovecot: Dovecot, rng: random.Random) -> None:
        self.dovecot, self.rng = dovecot, rng
        self.files = [p for p in corpus_files() if p.stat().st_size < 400_000]
        self.expected: dict[str, set[bytes]] = {}

    def deliver(self, account: str, user: MailUser, count: int) -> None:
        for _ in range(count):
            raw = self.rng.choice(self.files).read_bytes()
            raw = b"X-Soak: %d\n" % self.rng.randrange(10**12) + raw  # unique content
            self.dovecot.deliver(user.name, raw)
            self.expected.setdefault(account, set()).add(as_pop3(raw))

    def check(self, s3: MotoS3, bucket: str, users: dict[str, MailUser]) -> None:
        raws, docs = split_objects(bucket_objects(s3, bucket))
        for account, expected in self.expected.items():
            mine = [v for k, v in raws.items() if k.startswith(f"{account}/raw/")]
            assert sorted(mine) == sorted(expected), f"{account}: stored != delivered"
        assert len(raws) == sum(len(e) for e in self.expected.values())
        assert len(docs) == len(raws)
        for account, user in users.items():
            assert self.dovecot.message_count(user.name) == 0, account


def _kill_tree(worker: CeleryProcess) -> None:
    pids = {worker.pid, *descendants(worker.pid)}
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.stop()
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _supervise(workers: list[CeleryProcess]) -> None:
    """Restart a worker that exited by itself, as systemd's Restart=always would (a pool
    process killed while the worker starts makes Celery give up: WorkerLostError)."""
    for worker in workers:
        if not worker.alive():
            worker.start()


@pytest.mark.e2e
def test_random_sigkills_of_celery_workers_lose_and_double_nothing(
    tmp_path: Path, dovecot: Dovecot, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Two workers and beat on several accounts while a chaos loop SIGKILLs pool processes
    and whole workers; afterwards every message is stored once and every mailbox is empty."""
    rng = random.Random(SEED)
    print(f"soak seed {SEED}, {SECONDS} s")
    users = {f"soak{i}": dovecot.add_user(f"soak{i}x{SEED}", f"pw{i}-{SEED}") for i in range(4)}
    mail = Mail(dovecot, rng)
    for account, user in users.items():
        mail.deliver(account, user, 8)
    accounts = [account_entry(dovecot, u, name=a, interval=1) for a, u in users.items()]
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=accounts,
        dispatch_interval=0.5,
        lock_ttl=2,
    )
    env = {password_env(a): u.password for a, u in users.items()}
    workers = [
        CeleryProcess(
            "worker",
            cfg,
            tmp_path / f"w{i}.log",
            "--concurrency",
            "2",
            "--hostname",
            f"w{i}@soak",
            env=env,
        )
        for i in range(2)
    ]
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log", env=env)
    kills = 0
    with beat:
        for w in workers:
            w.start()
        try:
            end = time.monotonic() + SECONDS
            while time.monotonic() < end:
                time.sleep(rng.uniform(0.3, 1.5))
                _supervise(workers)
                victim = rng.choice(workers)
                children = sorted(descendants(victim.pid))
                if children and rng.random() < 0.6:
                    os.kill(rng.choice(children), signal.SIGKILL)
                else:
                    _kill_tree(victim)
                    victim.start()
                kills += 1
                account = rng.choice(list(users))
                mail.deliver(account, users[account], rng.randrange(0, 3))
            logs = [w.log_path for w in workers]

            def drained() -> bool:
                _supervise(workers)
                return all(dovecot.message_count(u.name) == 0 for u in users.values())

            wait_until(drained, 90, logs)
        finally:
            for w in workers:
                if w.proc is not None and w.alive():
                    _kill_tree(w)
    assert kills >= 3
    mail.check(s3_server, bucket, users)


def test_random_sigkills_of_ingest_poll_lose_and_double_nothing(
    tmp_path: Path, dovecot: Dovecot, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """`ingest poll` killed at random moments, over and over, then one clean poll: exactly once."""
    rng = random.Random(SEED + 1)
    print(f"soak seed {SEED}, {SECONDS} s")
    user = dovecot.add_user(f"cli{SEED}", f"pw-{SEED}")
    mail = Mail(dovecot, rng)
    mail.deliver("support", user, 30)
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, user)],
        lock_ttl=2,
    )
    env = {**os.environ, password_env("support"): user.password}
    argv = [sys.executable, "-m", "ingest", "--config", str(cfg), "poll", "support"]
    end = time.monotonic() + SECONDS
    runs = 0
    while time.monotonic() < end:
        proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(rng.uniform(0.2, 1.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        runs += 1
        mail.deliver("support", user, rng.randrange(0, 4))
    poll_until_unlocked(cfg, env)
    assert runs >= 3
    mail.check(s3_server, bucket, {"support": user})


def test_random_connection_cuts_lose_and_double_nothing(
    tmp_path: Path, dovecot: Dovecot, s3_server: MotoS3, bucket: str, redis_url: str
) -> None:
    """Polls through a proxy that cuts, resets or stalls at a random command and byte, over
    and over while mail arrives; then one clean poll: every message stored exactly once."""
    rng = random.Random(SEED + 2)
    print(f"soak seed {SEED}, {SECONDS} s")
    user = dovecot.add_user(f"cut{SEED}", f"pw-{SEED}")
    mail = Mail(dovecot, rng)
    mail.deliver("support", user, 20)
    env = {password_env("support"): user.password}
    end = time.monotonic() + SECONDS
    runs = 0
    while time.monotonic() < end:
        fault = Fault(
            rng.choice(["RETR", "RETR", "DELE", "QUIT", "UIDL", "LIST", "CAPA"]),
            rng.choice([Action.CUT, Action.CUT, Action.RESET, Action.STALL]),
            nth=rng.randrange(1, 6), after_bytes=rng.randrange(0, 40_000), rst=rng.random() < 0.5,
        )  # fmt: skip
        with Pop3FaultProxy(dovecot.host, dovecot.pop3_port, [fault]) as proxy:
            acct = account_entry(
                dovecot,
                user,
                security="plain",
                allow_plaintext=True,
                host=proxy.host,
                port=proxy.port,
                timeout=1,
            )
            cfg = write_config(
                tmp_path / "cut.yaml",
                redis_url=redis_url,
                s3=s3_server,
                bucket=bucket,
                accounts=[acct],
                lock_ttl=2,
            )
            result = run_cli(cfg, "poll", "support", env=env, timeout=60)
            assert result.returncode in (0, 1, 75), result.stderr[-2000:]
        runs += 1
        mail.deliver("support", user, rng.randrange(0, 3))
    direct = write_config(
        tmp_path / "direct.yaml",
        redis_url=redis_url,
        s3=s3_server,
        bucket=bucket,
        accounts=[account_entry(dovecot, user)],
        lock_ttl=2,
    )
    poll_until_unlocked(direct, env)
    assert runs >= 3
    mail.check(s3_server, bucket, {"support": user})

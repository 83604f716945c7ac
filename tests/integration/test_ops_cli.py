"""Operator commands as real processes: poll's progress bar, ledger show, shell completion."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import redis
from support import ROOT, account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser
from ingest.lock import AccountLock


def _polled(tmp_path: Path, dovecot: Dovecot, user: MailUser, redis_url: str, delete: str) -> Path:
    for i in range(3):
        dovecot.deliver(user.name, f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=tmp_path / "store",
        accounts=[account_entry(dovecot, user, delete=delete)],
    )
    return cfg


def test_poll_draws_a_progress_bar_when_asked(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """`poll --progress` shows messages handled of those to fetch; the summary is unchanged."""
    cfg = _polled(tmp_path, dovecot, mail_user, redis_url, "after_store")
    env = {password_env("support"): mail_user.password}
    result = run_cli(cfg, "poll", "support", "--progress", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "polling support" in result.stderr and "3/3" in result.stderr
    assert result.stdout.startswith("support: ok; listed 3, fetched 3, stored 3")
    quiet = run_cli(cfg, "poll", "support", env=env)  # not a terminal: no bar by default
    assert quiet.returncode == 0 and "polling support" not in quiet.stderr


def test_ledger_show_lists_records_and_one_uidl_in_full(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """ledger show: every record (JSON lines or table), filtered by state, or one UIDL."""
    cfg = _polled(tmp_path, dovecot, mail_user, redis_url, "never")
    env = {password_env("support"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0

    listed = run_cli(cfg, "ledger", "show", "support", "--json", env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 3 and {r["state"] for r in rows} == {"stored"}
    assert all(r["account"] == "support" and len(r["sha256"]) == 64 for r in rows)
    assert all(r["raw_key"] == f"support/raw/{r['sha256'][:2]}/{r['sha256']}.eml" for r in rows)

    uidl = rows[1]["uidl"]
    one = run_cli(cfg, "ledger", "show", "support", uidl, env=env)
    assert one.returncode == 0 and rows[1]["json_key"] in one.stdout and uidl in one.stdout
    table = run_cli(cfg, "ledger", "show", "support", env=env)
    assert "3 record(s)" in table.stdout and all(r["uidl"] in table.stdout for r in rows)
    none = run_cli(cfg, "ledger", "show", "support", "--state", "quarantined", "--json", env=env)
    assert none.returncode == 0 and none.stdout == ""
    missing = run_cli(cfg, "ledger", "show", "support", "no-such-uidl", env=env)
    assert missing.returncode == 1 and "'no-such-uidl' is not in the ledger" in missing.stderr
    unknown = run_cli(cfg, "ledger", "show", "nobody", env=env)
    assert unknown.returncode == 78 and "no account named 'nobody'" in unknown.stderr


def test_the_bash_completion_script_completes_commands_and_account_names(tmp_path: Path) -> None:
    """Sourced into a real bash, the printed script completes subcommands and account names."""
    config = tmp_path / "c.yaml"
    account = {"host": "h", "username": "u", "password_env": "P"}
    write_config(
        config,
        redis_url="redis://127.0.0.1:1/0",
        directory=tmp_path / "store",
        accounts=[{"name": "support", **account}, {"name": "sales", **account}],
    )
    ingest = shutil.which("ingest", path=str(Path(sys.executable).parent))
    assert ingest is not None
    script = subprocess.run(
        [ingest, "completion", "bash"], capture_output=True, text=True, check=True
    ).stdout

    def complete(*words: str) -> list[str]:
        probe = (
            f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}\n"
            f'_ingest_completion {ingest}; printf "%s\\n" "${{COMPREPLY[@]}}"'
        )
        env = {"PATH": "/usr/bin:/bin", "INGEST_CONFIG": str(config)}
        out = subprocess.run(
            ["bash", "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, check=True
        )
        return out.stdout.split()

    assert complete("ingest", "led") == ["ledger"]
    assert complete("ingest", "quarantine", "") == ["list", "retry"]
    assert complete("ingest", "ledger", "show", "s") == ["support", "sales"]
    for shell in ("zsh", "fish"):
        out = subprocess.run(
            [ingest, "completion", shell], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0 and "_INGEST_COMPLETE" in out.stdout


def test_ledger_forget_lists_then_deletes_the_keys_of_an_account_gone_from_the_config(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """An account removed from the config keeps its ledger and counters until `ledger
    forget --yes`; never while polled (its lock), never a configured account, and the
    other account's keys and the scheduler's stay."""
    cfg = _polled(tmp_path, dovecot, mail_user, redis_url, "never")
    both = [account_entry(dovecot, mail_user, delete="never", name=n) for n in ("support", "old")]
    write_config(cfg, redis_url=redis_url, directory=tmp_path / "store", accounts=both)
    env = {password_env(n): mail_user.password for n in ("support", "old")}
    for name in ("support", "old"):
        assert run_cli(cfg, "poll", name, env=env).returncode == 0
    client = redis.Redis.from_url(redis_url)
    client.set("ingest:{schedule}:tick", "1")
    write_config(cfg, redis_url=redis_url, directory=tmp_path / "store", accounts=both[:1])
    old_keys = set(client.keys("ingest:{old}:*"))
    others = set(client.keys("ingest:*")) - old_keys
    assert b"ingest:{old}:ledger" in old_keys and len(others) > 1

    listed = run_cli(cfg, "ledger", "forget")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.splitlines() == [
        f"old\t{len(old_keys)} keys\t3 ledger records\tnot in the config"
    ]
    assert "--yes" in listed.stderr and set(client.keys("ingest:{old}:*")) == old_keys
    refused = run_cli(cfg, "ledger", "forget", "support", "--yes")
    assert refused.returncode == 1 and "still in the config" in refused.stderr
    lock = AccountLock(client, "old", ttl=30)
    assert lock.acquire()
    busy = run_cli(cfg, "ledger", "forget", "old", "--yes")
    assert busy.returncode == 75 and "a poll of old is running" in busy.stderr
    assert set(client.keys("ingest:{old}:*")) - {b"ingest:{old}:lock"} == old_keys
    lock.release()

    forgot = run_cli(cfg, "ledger", "forget", "--yes")
    assert forgot.returncode == 0, forgot.stderr[-2000:]
    assert forgot.stdout.splitlines() == [f"old\t{len(old_keys)} keys deleted"]
    assert client.keys("ingest:{old}:*") == [] and set(client.keys("ingest:*")) == others
    again = run_cli(cfg, "ledger", "forget")
    assert again.stdout == "" and "no account in Redis" in again.stderr
    unknown = run_cli(cfg, "ledger", "forget", "never-polled", "--yes")
    assert unknown.stdout == "never-polled\t0 keys deleted\n", unknown.stderr[-2000:]
    assert client.keys("ingest:{never-polled}:*") == []

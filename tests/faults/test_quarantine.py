"""Poison messages: quarantined after N failed polls, listed and retried from the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, as_pop3
from ingest import keys

MESSAGES = [b"Subject: m%d\n\nbody %d\n" % (i, i) for i in range(3)]


def test_corrupt_object_quarantines_one_message_and_the_rest_flows(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """A key holding foreign bytes fails 3 polls, is quarantined, listed, retried and stored."""
    for raw in MESSAGES:
        dovecot.deliver(mail_user.name, raw)
    store = tmp_path / "store"
    poison = as_pop3(MESSAGES[1])
    sha = hashlib.sha256(poison).hexdigest()
    bad = store / keys.raw_key("", "support", sha)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"rotten bytes")
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=store,
        accounts=[account_entry(dovecot, mail_user)],
        quarantine_after=3,
    )
    env = {password_env("support"): mail_user.password}

    for _ in range(2):
        failed = run_cli(cfg, "poll", "support", env=env)
        assert failed.returncode == 1 and "holds sha256" in failed.stderr
        assert dovecot.message_count(mail_user.name) == 3
    partial = run_cli(cfg, "poll", "support", env=env)
    assert partial.returncode == 1 and "partial" in partial.stdout
    assert "quarantined 1" in partial.stdout
    flowing = run_cli(cfg, "poll", "support", env=env)
    assert flowing.returncode == 0, flowing.stderr[-2000:]
    assert dovecot.message_count(mail_user.name) == 1  # only the poison message is left

    listed = run_cli(cfg, "quarantine", "list", "--json", env=env)
    (item,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert item["account"] == "support" and item["failures"] == 3
    assert "holds sha256" in item["reason"]

    bad.unlink()  # the operator repairs the store, then releases the message
    released = run_cli(cfg, "quarantine", "retry", "support", "--all", env=env)
    assert "released 1" in released.stdout
    done = run_cli(cfg, "poll", "support", env=env)
    assert done.returncode == 0 and "stored 1" in done.stdout
    assert bad.read_bytes() == poison and dovecot.message_count(mail_user.name) == 0
    assert run_cli(cfg, "quarantine", "list", "--json", env=env).stdout == ""

"""SIGKILL a real `ingest poll` process at every named step, restart, and check the invariants.

After the kill and one clean poll: every message is stored exactly once (no missing raw, no
second raw or JSON under another key), each message has exactly one index row, and the
mailbox is empty (delete mode) or untouched (keep mode).
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from support import (
    account_entry,
    assert_index_rows_once,
    assert_stored_exactly_once,
    bucket_objects,
    password_env,
    poll_until_unlocked,
    run_cli,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, as_pop3, corpus_files
from ingest.failpoints import POINTS

PER_MESSAGE = {
    "after_retr", "after_raw_put", "after_json_put", "after_hooks", "after_dele",
}  # fmt: skip
# after_mark_stored fires once per batch of finished messages, marked together; how the
# messages fall into batches depends on timing, so only its first hit is sure to come.
MESSAGES = 5


def _setup(
    tmp_path: Path,
    dovecot: Dovecot,
    user: MailUser,
    s3: MotoS3,
    bucket: str,
    redis_url: str,
    delete: str,
) -> tuple[Path, dict[str, str], set[bytes]]:
    expected = set()
    for path in corpus_files()[40 : 40 + MESSAGES]:
        dovecot.deliver(user.name, path.read_bytes())
        expected.add(as_pop3(path.read_bytes()))
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        s3=s3,
        bucket=bucket,
        prefix="crash",
        accounts=[account_entry(dovecot, user, delete=delete)],
        lock_ttl=2,
        index=True,
    )
    return cfg, {password_env("support"): user.password}, expected


@pytest.mark.parametrize("point", POINTS)
def test_kill_at_each_point_then_restart_stores_everything_once(
    point: str,
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """Delete mode: whatever step the process dies at, a clean poll finishes the job exactly."""
    cfg, env, expected = _setup(
        tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, "after_store"
    )
    nth = 3 if point in PER_MESSAGE else 1
    killed = run_cli(cfg, "poll", "support", env={**env, "INGEST_FAILPOINT": f"{point}:{nth}"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if point not in {"after_quit_sent", "after_quit", "after_mark_deleted"}:
        assert dovecot.message_count(mail_user.name) == MESSAGES  # nothing committed
    poll_until_unlocked(cfg, env)
    assert_stored_exactly_once(s3_server, bucket, expected)
    assert_index_rows_once(bucket_objects(s3_server, bucket), "crash")
    assert dovecot.message_count(mail_user.name) == 0
    again = poll_until_unlocked(cfg, env)
    assert "fetched 0, stored 0" in again


@pytest.mark.parametrize(
    "point", ["after_raw_put", "after_mark_stored", "before_quit", "after_quit"]
)
def test_kill_in_keep_mode_leaves_the_mailbox_untouched(
    point: str,
    tmp_path: Path,
    dovecot: Dovecot,
    mail_user: MailUser,
    s3_server: MotoS3,
    bucket: str,
    redis_url: str,
) -> None:
    """Keep mode: a kill anywhere never deletes mail, and the restart stores each message once."""
    cfg, env, expected = _setup(tmp_path, dovecot, mail_user, s3_server, bucket, redis_url, "never")
    nth = 2 if point in PER_MESSAGE else 1
    killed = run_cli(cfg, "poll", "support", env={**env, "INGEST_FAILPOINT": f"{point}:{nth}"})
    assert killed.returncode == -signal.SIGKILL
    poll_until_unlocked(cfg, env)
    assert_stored_exactly_once(s3_server, bucket, expected)
    assert_index_rows_once(bucket_objects(s3_server, bucket), "crash")
    assert dovecot.message_count(mail_user.name) == MESSAGES

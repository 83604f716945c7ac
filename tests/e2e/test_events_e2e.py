"""Events through Celery: beat and real workers deliver to a downstream Celery app's task."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from support import (
    ROOT,
    account_entry,
    bucket_objects,
    password_env,
    split_objects,
    wait_until,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, corpus_files
from harness.celery_procs import CeleryProcess
from harness.process import spawn, stop_process
from ingest.events import event_id

pytestmark = pytest.mark.e2e


def test_workers_send_each_event_to_the_downstream_celery_task(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str,
) -> None:  # fmt: skip
    """A poll run by the workers ends in one task per stored message at the downstream app,
    its argument the CloudEvent with the stable id."""
    for path in corpus_files()[70:74]:
        dovecot.deliver(mail_user.name, path.read_bytes())
    sink = {"type": "celery", "task": "downstream.new_mail", "queue": "downstream"}
    cfg = write_config(
        tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket,
        accounts=[account_entry(dovecot, mail_user, interval=2, events=[sink])],
        dispatch_interval=1, events_interval=1,
    )  # fmt: skip
    out = tmp_path / "downstream.jsonl"
    env = {password_env("support"): mail_user.password}
    worker = CeleryProcess("worker", cfg, tmp_path / "worker.log", "--concurrency", "2", env=env)
    beat = CeleryProcess("beat", cfg, tmp_path / "beat.log", env=env)
    downstream_log = tmp_path / "downstream.log"
    consumer = spawn(
        [sys.executable, "-m", "celery", "-A", "downstream_app", "worker", "--pool", "solo",
         "-Q", "downstream", "--loglevel", "INFO"],
        downstream_log,
        env={**os.environ, "DOWNSTREAM_BROKER": redis_url, "DOWNSTREAM_OUT": str(out),
             "PYTHONPATH": str(ROOT / "tests" / "e2e")},
    )  # fmt: skip
    logs = [worker.log_path, beat.log_path, downstream_log]
    try:
        with worker, beat:
            wait_until(lambda: dovecot.message_count(mail_user.name) == 0, 90, logs)
            wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= 4, 60, logs)
    finally:
        stop_process(consumer, 20.0)
    _, docs = split_objects(bucket_objects(s3_server, bucket))
    expected = {
        event_id(d["account"], d["uidl"], d["sha256"]) for d in map(json.loads, docs.values())
    }
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["id"] for e in events} == expected and len(events) == len(expected) == 4
    raw_keys = {json.loads(d)["raw_key"] for d in docs.values()}
    assert all(e["data"]["raw_key"] in raw_keys for e in events)
    assert "Traceback" not in worker.log_path.read_text()

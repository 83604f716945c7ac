"""The Celery app, configured so that a lost worker never loses or doubles a poll.

Every setting below is explained in the README ("Celery settings and why").
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import structlog
from celery import Celery
from celery.signals import worker_init

from ingest import logs
from ingest.checks import startup_problems
from ingest.config import load_settings
from ingest.reload import ConfigWatcher

settings = load_settings()
config = ConfigWatcher(settings)  # tasks read config.current(): accounts reload without restart
logs.configure(os.environ.get("INGEST_LOG_LEVEL", "INFO"))

app = Celery("ingest", broker=settings.redis_url, include=["workers.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_soft_time_limit=settings.max_poll_seconds,
    task_time_limit=settings.max_poll_seconds + 60,
    broker_transport_options={"visibility_timeout": int(settings.max_poll_seconds + 600)},
    worker_cancel_long_running_tasks_on_connection_loss=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="ingest",
    beat_schedule={
        "dispatch-due-accounts": {
            "task": "ingest.dispatch",
            "schedule": settings.dispatch_interval,
            "options": {"expires": settings.dispatch_interval},
        }
    },
    beat_schedule_filename=os.environ.get(
        "INGEST_BEAT_STATE", str(Path(tempfile.gettempdir()) / "ingest-celerybeat-schedule")
    ),
)


@worker_init.connect
def _refuse_unsafe_start(**_: object) -> None:
    """Refuse to take tasks when Redis evicts keys or the store ignores create-only writes."""
    problems = startup_problems(settings)
    for problem in problems:
        structlog.get_logger("workers.app").error("worker.unsafe_setup", problem=problem)
    if problems:
        raise SystemExit("refusing to start: " + "; ".join(problems))

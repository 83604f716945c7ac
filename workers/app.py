"""The Celery app, configured so that a lost worker never loses or doubles a poll.

Every setting below is explained in the README ("Celery settings and why").
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Any

import structlog
from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_ready

from ingest import allocator, health, logs, metrics
from ingest.checks import startup_problems
from ingest.config_load import load_settings
from ingest.delivery import account_sinks
from ingest.reload import ConfigWatcher

allocator.tune()  # before the pool forks: its processes inherit the settings
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

if any(account_sinks(settings, a) for a in settings.accounts):
    app.conf.beat_schedule["deliver-events"] = {
        "task": "ingest.deliver_events",
        "schedule": settings.events_interval,
        "options": {"expires": settings.events_interval},
    }


@worker_init.connect
def _fresh_metrics(**_: object) -> None:
    """Empty the metrics directory before anything in this process counts (receivers run
    in the order they are connected, so this comes before the start-up checks' requests)."""
    metrics.clear_multiprocess_dir()


@worker_init.connect
def _refuse_unsafe_start(**_: object) -> None:
    """Refuse to take tasks when Redis evicts keys or the store ignores create-only writes."""
    problems = startup_problems(settings)
    for problem in problems:
        structlog.get_logger("workers.app").error("worker.unsafe_setup", problem=problem)
    if problems:
        raise SystemExit("refusing to start: " + "; ".join(problems))


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    """Serve /metrics, /healthz, /readyz from this (the main) process."""
    from ingest.metrics_http import start_server  # noqa: PLC0415 - only workers serve

    cfg, log = settings.metrics, structlog.get_logger("workers.app")
    if not cfg.port:
        return
    try:
        server = start_server(settings, cfg.address, cfg.port)
    except OSError as err:  # e.g. a second worker on this host: polling goes on regardless
        log.error("metrics.not_serving", address=cfg.address, port=cfg.port, error=str(err))
        return
    log.info("metrics.serving", address=cfg.address, port=server.server_address[1])


@worker_ready.connect
def _tick_liveness(sender: Any = None, **_: object) -> None:
    """The event loop touches the liveness clock; /healthz fails once it stops."""
    health.touch()
    sender.timer.call_repeatedly(health.LIVENESS_TICK, health.touch)


@worker_process_init.connect
def _freeze_startup_objects(**_: object) -> None:
    """A pool process keeps what it was started with (modules, config) to the end: out of
    the collector's sight, the full collections during polls walk only what polls made."""
    gc.freeze()


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: object) -> None:
    """A pool process exited: drop its live gauges from the shared metrics directory."""
    if pid is not None:
        metrics.process_exited(pid)

"""A downstream Celery app, as a consumer of ingest's celery sink would run it.

Its one task appends each CloudEvent it receives to ``$DOWNSTREAM_OUT`` (one JSON a line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from celery import Celery

app = Celery("downstream", broker=os.environ["DOWNSTREAM_BROKER"])
app.conf.update(
    task_default_queue="downstream",
    accept_content=["json"],
    task_serializer="json",
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)


@app.task(name="downstream.new_mail")
def new_mail(event: dict[str, Any]) -> None:
    with Path(os.environ["DOWNSTREAM_OUT"]).open("a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")

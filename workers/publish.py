"""Publishing one tick's polls: a claimed batch of accounts in one Redis round trip.

Celery publishes each task on its own: a Redis client object and a round trip per task,
about 0.5 ms each. kombu's publish batch (``Producer.batch``) buffers the batch's LPUSHes
in one pipeline instead, about 0.2 ms a task. That was the dispatcher's next bottleneck
at 100,000 accounts (see the README, "Scaling to 100,000 accounts").

If the batch fails (the broker went away while it was being sent), kombu cannot tell
which of its tasks arrived. Each account of the batch is then published again on its own,
with Celery's publish retry. A poll published twice finds the account locked and ends
``busy``; a poll not published at all would wait a whole interval, because the claim
already moved the account's next due time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis
import structlog
from kombu.exceptions import KombuError

log = structlog.get_logger("ingest.dispatch")

DEFAULT_EXPIRES = 60.0


def publish_polls(
    task: Any, producer: Any, names: Sequence[str], expires: Mapping[str, float]
) -> None:
    """Publish ``task`` for each name (its argument) through ``producer``, as one batch.

    ``expires``: seconds after which each account's poll is dropped unconsumed (its
    interval: by then the next tick has published another)."""
    if not names:
        return
    try:  # sent when the block ends, not by the last publish: outside Celery's publish
        # retry, which would revive the channel under the open batch
        with producer.batch(max_size=len(names) + 1):
            _each(task, producer, names, expires)
    except (KombuError, redis.RedisError, OSError, RuntimeError) as err:
        # RuntimeError: kombu refuses to go on with the batch once Celery's publish retry
        # revived the channel under it (a broker blip while a queue was being declared)
        log.warning("dispatch.batch_failed", accounts=len(names), error=str(err))
        _each(task, producer, names, expires)


def _each(task: Any, producer: Any, names: Sequence[str], expires: Mapping[str, float]) -> None:
    for name in names:
        task.apply_async(args=[name], expires=expires.get(name, DEFAULT_EXPIRES), producer=producer)

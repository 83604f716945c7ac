"""Named crash points: tests SIGKILL the real process at an exact step of a poll.

``INGEST_FAILPOINT=NAME[:N][@MARKER]`` kills this process with SIGKILL the N-th time
(default 1st) the poll reaches point NAME. With ``@MARKER`` (a file path) the point fires
only while MARKER does not exist and creates it just before dying, so a restarted worker
that inherits the same environment runs through. Unset, a check is one attribute read.

The points, in the order a poll reaches them (see ``ingest/pipeline.py``)::

    after_listing  after_retr  after_raw_put  after_json_put  after_hooks  after_mark_stored
    after_dele  before_quit  after_quit_sent  after_quit  after_mark_deleted
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = (
    "after_listing", "after_retr", "after_raw_put", "after_json_put", "after_hooks",
    "after_mark_stored",
    "after_dele", "before_quit", "after_quit_sent", "after_quit", "after_mark_deleted",
)  # fmt: skip


def _parse(spec: str) -> tuple[str, int, Path | None]:
    spec, _, marker = spec.partition("@")
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"INGEST_FAILPOINT: unknown point {name!r}; known: {', '.join(POINTS)}")
    return name, int(count or 1), Path(marker) if marker else None


_SPEC = os.environ.get("INGEST_FAILPOINT", "")
_ARMED = _parse(_SPEC) if _SPEC else None
_hits: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Die here (SIGKILL, no cleanup at all) if the environment asks for it."""
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    _, count, marker = _ARMED
    if _hits[name] != count:
        return
    if marker is not None:
        try:
            marker.touch(exist_ok=False)
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)

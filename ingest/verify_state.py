"""What ``ingest verify`` found and how far it got (a resumable state file), and its pacing.

The cursor is the last position done, ``[account, stage, sha or key]``; positions are
visited in increasing order, so a resumed run skips everything up to the cursor. The file
is replaced atomically (temp file, fsync, rename) every few seconds and on each finding.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Position = tuple[str, int, str]
_SAVE_EVERY = 2.0  # seconds


class Stop(Exception):
    """The run reached its ``limit`` of object reads; the state says where to go on."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``kind`` is missing, corrupt or orphaned; ``what`` is raw, json, index
    or attachment."""

    kind: str
    what: str
    account: str
    key: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        return f"{self.kind}\t{self.what}\t{self.account}\t{self.key}\t{self.detail}"


class State:
    """Cursor, findings and counts of one audit, kept in ``path`` when given."""

    def __init__(
        self,
        path: Path | None,
        scope: dict[str, Any],
        on_finding: Callable[[Finding], None] = lambda f: None,
    ) -> None:
        self.path, self.scope, self.on_finding = path, scope, on_finding
        self.cursor: Position | None = None
        self.findings: list[Finding] = []
        self.checked = 0
        self.finished = False
        self.resumed = False
        self._saved = time.monotonic()
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        if data.get("scope") != self.scope or data.get("finished"):
            return  # another audit, or a finished one: start afresh
        self.cursor = tuple(data["cursor"]) if data.get("cursor") else None
        self.findings = [Finding(**f) for f in data.get("findings", [])]
        self.checked = int(data.get("checked", 0))
        self.resumed = True

    def todo(self, position: Position) -> bool:
        return self.cursor is None or position > self.cursor

    def done(self, position: Position) -> None:
        self.cursor = position
        if time.monotonic() - self._saved >= _SAVE_EVERY:
            self.save()

    def add(self, finding: Finding) -> None:
        if finding in self.findings:  # re-found after a resume
            return
        self.findings.append(finding)
        self.on_finding(finding)
        self.save()

    def finish(self) -> None:
        self.finished = True
        self.save()

    def save(self) -> None:
        self._saved = time.monotonic()
        if self.path is None:
            return
        data = {
            "scope": self.scope,
            "cursor": list(self.cursor) if self.cursor else None,
            "checked": self.checked,
            "finished": self.finished,
            "findings": [f.as_dict() for f in self.findings],
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".verify-")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    def summary(self) -> dict[str, int]:
        counts = {"checked": self.checked, "missing": 0, "corrupt": 0, "orphaned": 0}
        for finding in self.findings:
            counts[finding.kind] += 1
        return counts


class Pacer:
    """At most ``rate`` object reads per second, and at most ``limit`` reads in this run."""

    def __init__(
        self,
        rate: float | None = None,
        limit: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.limit, self.clock, self.sleep = rate, limit, clock, sleep
        self.reads = 0
        self._next = clock()

    def wait(self) -> None:
        """Called before each read: stop at the limit, else wait for the read's turn."""
        if self.limit is not None and self.reads >= self.limit:
            raise Stop(f"read limit of {self.limit} objects reached")
        self.reads += 1
        if not self.rate:
            return
        now = self.clock()
        if self._next > now:
            self.sleep(self._next - now)
        self._next = max(now, self._next) + 1 / self.rate

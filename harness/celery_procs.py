"""Real ``celery worker`` and ``celery beat`` processes for end-to-end tests and the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Self

from harness.process import Managed, spawn, stop_process

ROOT = Path(__file__).resolve().parent.parent


class CeleryProcess(Managed):
    """``python -m celery -A workers.app KIND`` with ``INGEST_CONFIG`` set, stopped by PID."""

    def __init__(
        self,
        kind: str,
        config: Path,
        log_path: Path,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.config = config
        self.log_path = log_path
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        env = {
            **os.environ,
            **self.env,
            "INGEST_CONFIG": str(self.config),
            "INGEST_BEAT_STATE": str(self.log_path.with_suffix(".beat-state")),
            "PYTHONPATH": str(ROOT),
        }
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            self.kind,
            "--loglevel",
            "INFO",
            *self.args,
        ]
        self.proc = spawn(argv, self.log_path, env=env)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        stop_process(self.proc, timeout)

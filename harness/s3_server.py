"""moto's standalone S3 server on a free loopback port, plus a boto3 client pointed at it."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from harness.ports import free_port
from harness.process import ServerStartError, spawn, stop_process, wait_ready

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
_START_ATTEMPTS = 3


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True if an HTTP GET of ``url`` gets any HTTP response at all."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - fixed http URL
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class MotoS3:
    """``python -m moto.server`` (this interpreter's moto) on 127.0.0.1, stopped by PID."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(self.host)
        self.log_path = self.workdir / "moto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """PID of the running moto server."""
        if self._proc is None:
            raise RuntimeError("moto server is not running")
        return self._proc.pid

    def start(self) -> MotoS3:
        """Start the server and wait until it answers HTTP; retry on a port lost to a race."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(_START_ATTEMPTS):
            try:
                self._start_once()
                return self
            except ServerStartError:
                if self._fixed_port or attempt == _START_ATTEMPTS - 1:
                    raise
                self.port = free_port(self.host)
        return self  # pragma: no cover - the loop returns or raises

    def _start_once(self) -> None:
        argv = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
        self._proc = spawn(argv, self.log_path)
        wait_ready(
            self._proc,
            lambda: http_answers(self.endpoint_url + "/moto-api/"),
            what=f"moto server on port {self.port}",
            log_path=self.log_path,
            timeout=30.0,
        )

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL). Idempotent."""
        stop_process(self._proc)

    def client(self, **config: Any) -> S3Client:
        """A boto3 S3 client for this server (us-east-1, dummy credentials, path-style URLs)."""
        import boto3  # noqa: PLC0415 - keep ``import harness`` light for non-S3 users
        from botocore.config import Config  # noqa: PLC0415

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (us-east-1 takes no location constraint)."""
        self.client().create_bucket(Bucket=name)

    def __enter__(self) -> MotoS3:
        return self if self._proc is not None and self._proc.poll() is None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

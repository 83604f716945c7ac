"""moto's standalone S3 server on a free loopback port, plus a boto3 client pointed at it."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from harness.process import LocalServer, spawn, wait_ready

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """True if an HTTP GET of ``url`` gets any HTTP response at all."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - fixed http URL
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class MotoS3(LocalServer):
    """``python -m moto.server`` (this interpreter's moto) on 127.0.0.1, stopped by PID."""

    name = "moto server"
    log_name = "moto.log"

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

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

    def create_bucket(self, name: str, *, object_lock: bool = False) -> None:
        """Create bucket ``name`` (us-east-1 takes no location constraint); with
        ``object_lock`` it is versioned and Object Lock is enabled on it."""
        if object_lock:
            self.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            self.client().create_bucket(Bucket=name)

    def create_kms_key(self) -> str:
        """A new, enabled KMS key on this server (moto serves KMS at the same endpoint)."""
        import boto3  # noqa: PLC0415

        kms = boto3.client(
            "kms",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        return str(kms.create_key(Description="ingest test key")["KeyMetadata"]["KeyId"])

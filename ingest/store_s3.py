"""The S3 blob store: any S3-compatible object storage, through one boto3 client.

Writes are create-only to content-derived keys. ``put`` returns once the object is
durably stored *and* verified against the sha256 we computed: the PUT carries
``If-None-Match: *``, ``Content-MD5`` and ``x-amz-checksum-sha256`` (sent explicitly, with
``request_checksum_calculation="when_required"`` so botocore never switches to the
aws-chunked trailer encoding that many S3-compatible stores reject). The reply must confirm
the body: its SHA-256 checksum or an MD5 ETag must match ours. A 412 means the key already
exists: we then verify the stored object (checksum, MD5 ETag, or a full read) instead of
failing.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError  # light; boto3 is imported lazily

from ingest.config import StorageConfig
from ingest.errors import StorageError, TransientError
from ingest.interfaces import Put, Readable
from ingest.metrics import instrument_s3
from ingest.object_params import ObjectWriter
from ingest.spool import Spool

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_CHUNK = 1024 * 1024
_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')
_PERMANENT_CODES = {
    "AccessDenied",
    "NoSuchBucket",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidBucketName",
    "NotImplemented",
}


def _sha256_of(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _b64(hexdigest: str) -> str:
    return base64.b64encode(bytes.fromhex(hexdigest)).decode()


class S3Store:
    """Any S3-compatible endpoint (AWS, MinIO, Ceph, R2, moto) through one boto3 client."""

    writer: ObjectWriter | None = None  # one account's write options (see ``for_account``)

    def __init__(self, cfg: StorageConfig, client: S3Client | None = None) -> None:
        self.bucket = cfg.bucket
        self.client: S3Client = client or make_s3_client(cfg)
        self._where = f"s3://{cfg.bucket}" + (f" at {cfg.endpoint_url}" if cfg.endpoint_url else "")

    def describe(self) -> str:
        return self._where

    def for_account(self, writer: ObjectWriter) -> S3Store:
        """A view of this store (the same client) writing with one account's options."""
        view = copy.copy(self)
        view.writer = writer
        return view

    def protection(self, key: str) -> dict[str, str]:
        """How the raw object ``key`` put through this view is protected (ledger record)."""
        return self.writer.protection(key) if self.writer else {}

    def _params(self, key: str, body: Spool, *, create: bool) -> dict[str, Any]:
        if self.writer is None:
            return {"Metadata": {"sha256": body.sha256}}
        return self.writer.params(key, body, create=create)

    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        sha256, md5 = body.sha256, body.md5
        params = self._params(key, body, create=True)
        try:
            reply = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body.open(),
                ContentLength=body.size,
                ContentType=content_type,
                ContentMD5=_b64(md5),
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(sha256),
                IfNoneMatch="*",
                **params,
            )
        except ClientError as err:
            if _code(err) in ("PreconditionFailed", "412"):
                if must_match:
                    head = self._verify_existing(key, sha256, body.size, md5)
                    if self.writer:
                        self.writer.note(key, {}, head)
                return Put.EXISTED
            raise _translate(err, f"PUT {key}") from err
        except BotoCoreError as err:
            raise TransientError(f"storage unreachable during PUT {key}: {err}") from err
        self._confirm(key, dict(reply), sha256, md5)
        if self.writer:
            self.writer.note(key, params, dict(reply))
        return Put.CREATED

    def _confirm(self, key: str, reply: dict[str, Any], sha256: str, md5: str) -> None:
        """The store's own digest of what it holds must match ours: SHA-256 and/or MD5 ETag."""
        checksum = reply.get("ChecksumSHA256")
        etag = _MD5_ETAG.match(str(reply.get("ETag", ""))) if _etag_is_md5(reply) else None
        if checksum is None and etag is None:
            raise StorageError(f"{key}: the store confirmed neither SHA-256 nor an MD5 ETag")
        if checksum is not None and checksum != _b64(sha256):
            raise StorageError(f"{key}: store reports SHA-256 {checksum}, expected {sha256}")
        if etag is not None and etag.group(1) != md5:
            raise StorageError(f"{key}: store reports MD5 {etag.group(1)}, expected {md5}")

    def _verify_existing(self, key: str, sha256: str, size: int, md5: str) -> dict[str, Any]:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"HEAD {key}") from err
        if head.get("ContentLength") != size:
            raise StorageError(f"{key} exists with {head.get('ContentLength')} bytes, not {size}")
        if head.get("ChecksumSHA256") or (
            _etag_is_md5(dict(head)) and _MD5_ETAG.match(str(head.get("ETag", "")))
        ):
            self._confirm(key, dict(head), sha256, md5)
        elif self._stored_sha256(key) != sha256:
            raise StorageError(f"{key} exists with different content than {sha256}")
        return dict(head)

    def _stored_sha256(self, key: str) -> str:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return _sha256_of(body)  # type: ignore[arg-type]  # StreamingBody reads like a file
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"GET {key}") from err

    def get(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            return body.read()
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"GET {key}") from err

    def reader(self, key: str) -> Readable:
        """The object's body as a stream (a GET whose body is read as the caller goes)."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"GET {key}") from err

    def replace(self, key: str, body: Spool, content_type: str) -> None:
        """Overwrite a derived object (a rebuilt JSON document), verified like ``put``."""
        sha256, md5 = body.sha256, body.md5  # everything that reads the body, before open()
        params = self._params(key, body, create=False)
        try:
            reply = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body.open(), ContentLength=body.size,
                ContentType=content_type, ContentMD5=_b64(md5), ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64(sha256), **params,
            )  # fmt: skip
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"PUT {key}") from err
        self._confirm(key, dict(reply), sha256, md5)

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in key order."""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"]
        except (ClientError, BotoCoreError) as err:
            raise _translate(err, f"LIST {prefix}") from err


def _etag_is_md5(reply: dict[str, Any]) -> bool:
    """AWS: a single-part object's ETag is its MD5 unless encrypted with SSE-KMS or SSE-C."""
    sse = str(reply.get("ServerSideEncryption", ""))
    return not sse.startswith("aws:kms") and "SSECustomerAlgorithm" not in reply


def make_s3_client(cfg: StorageConfig) -> S3Client:
    """The one boto3 client path, for AWS and every S3-compatible store.

    boto3 is imported here, not at module level: it takes ~0.3 s, which a poll into a
    directory store (and every CLI command) would otherwise pay at start-up.
    """
    import boto3  # noqa: PLC0415 - lazy, see above
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        region_name=cfg.region,
        connect_timeout=cfg.timeout,
        read_timeout=cfg.timeout,
        retries={"mode": "standard", "total_max_attempts": cfg.max_attempts},
        s3={"addressing_style": cfg.addressing_style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=32,
    )
    client = boto3.client("s3", endpoint_url=cfg.endpoint_url, config=config)
    instrument_s3(client)  # request latency and errors, by operation
    return client


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _translate(err: Exception, what: str) -> Exception:
    if isinstance(err, ClientError):
        code = _code(err)
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _PERMANENT_CODES or status in (400, 403, 404):
            return StorageError(f"{what}: {code or status}: {err}")
        return TransientError(f"{what}: {code or status}: {err}")
    return TransientError(f"storage unreachable during {what}: {err}")

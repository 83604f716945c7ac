"""Blob stores: S3-compatible object storage (boto3) and a local directory, one interface.

Writes are create-only to content-derived keys. ``put`` returns once the object is
durably stored *and* verified against the sha256 we computed:

- S3: the PUT carries ``If-None-Match: *``, ``Content-MD5`` and ``x-amz-checksum-sha256``
  (sent explicitly, with ``request_checksum_calculation="when_required"`` so botocore
  never switches to the aws-chunked trailer encoding that many S3-compatible stores
  reject). The reply must confirm the body: its SHA-256 checksum or an MD5 ETag must
  match ours. A 412 means the key already exists: we then verify the stored object
  (checksum, MD5 ETag, or a full read) instead of failing.
- Directory: write a temp file, fsync, hard-link into place (fails if the name exists,
  so it is create-only too), fsync the directory, then re-read and hash it (through the
  descriptor it was written with: the inode the new name links to).
"""

from __future__ import annotations

import base64
import copy
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError  # light; boto3 is imported lazily

from ingest.config import StorageConfig
from ingest.errors import StorageError, TransientError
from ingest.interfaces import BlobStore, Put, Readable
from ingest.metrics import instrument_s3, storage_timed
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


class DirectoryStore:
    """Objects as files below a directory; the embedded default for laptops and demos.

    The write path is kept to a few system calls per object (each one lets another store
    thread take the GIL): keys are checked lexically instead of resolved component by
    component, and directories already made are remembered.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._base = os.path.realpath(root)
        self._made: set[str] = set()  # directories known to exist
        self._unnamed = bool(_O_TMPFILE)  # False once an unnamed file was refused here

    def describe(self) -> str:
        return f"file://{self.root}"

    def _file(self, key: str) -> str:
        path = os.path.normpath(os.path.join(self._base, key))
        if not path.startswith(self._base + os.sep):
            raise StorageError(f"key {key!r} escapes the store directory")
        return path

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _make_parent(self, path: str) -> str:
        parent = os.path.dirname(path)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)
        return parent

    @storage_timed("put")
    def put(self, key: str, body: Spool, content_type: str, *, must_match: bool = True) -> Put:
        path = self._file(key)
        try:
            parent = self._make_parent(path)
            written = None if os.path.exists(path) else self._link_new(parent, path, body)
            if written is None and not must_match:
                return Put.EXISTED
            actual = written or _file_sha256(path)
        except OSError as err:
            raise TransientError(f"cannot write {path}: {err}") from err
        if actual != body.sha256:
            raise StorageError(f"{path} holds sha256 {actual}, expected {body.sha256}")
        return Put.EXISTED if written is None else Put.CREATED

    def _link_new(self, parent: str, path: str, body: Spool) -> str | None:
        """Write a new file (unnamed where the system allows), fsync it, hard-link it to
        ``path`` and fsync the directory; the SHA-256 of the file as read back (the same
        inode the link names), or None if ``path`` exists."""
        named = not self._unnamed
        try:
            tmp, fd = _write_synced(parent, body, named=named)
        except FileNotFoundError:  # the directory was removed since we made it
            self._made.discard(parent)
            self._make_parent(path)
            tmp, fd = _write_synced(parent, body, named=named)
        if tmp is not None and not named:  # the file system refused an unnamed file
            self._unnamed = False
        dir_fd = -1
        try:
            try:
                dir_fd = os.open(parent, os.O_RDONLY | _CLOEXEC)
                linked = _link(fd, tmp, os.path.basename(path), dir_fd)
            finally:
                if tmp:
                    os.unlink(tmp)
            if linked is None:  # /proc cannot name an unnamed file here: name them all
                self._unnamed = False
                return self._link_new(parent, path, body)
            if not linked:
                return None
            os.fsync(dir_fd)
            return _fd_sha256(fd)
        finally:
            os.close(fd)
            if dir_fd >= 0:
                os.close(dir_fd)

    @storage_timed("get")
    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err}") from err

    def reader(self, key: str) -> Readable:
        try:
            return self._path(key).open("rb")
        except OSError as err:
            raise StorageError(f"cannot read {key}: {err}") from err

    @storage_timed("replace")
    def replace(self, key: str, body: Spool, content_type: str) -> None:
        """Overwrite a derived object atomically (temp file, fsync, rename), then verify."""
        path = self._file(key)
        try:
            parent = self._make_parent(path)
            tmp, fd = _write_synced(parent, body, named=True)
            assert tmp is not None  # named: renamed over the old file
            try:
                os.replace(tmp, path)
                _fsync_dir(parent)
                actual = _fd_sha256(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise TransientError(f"cannot write {path}: {err}") from err
        if actual != body.sha256:
            raise StorageError(f"{path} holds sha256 {actual}, expected {body.sha256}")

    def keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in key order (temporary files excluded)."""
        base = self.root / prefix
        if not base.exists():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()


# An unnamed new file (Linux O_TMPFILE), linked into place once complete: a writer killed
# mid-write leaves nothing behind. It is named through /proc, so both must be there.
_O_TMPFILE = getattr(os, "O_TMPFILE", 0) if os.path.isdir("/proc/self/fd") else 0
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _write_synced(parent: str, body: Spool, *, named: bool) -> tuple[str | None, int]:
    """A new file in ``parent`` holding ``body``, fsynced, and an open descriptor
    (read-write, for the read-back). Its temp path, or None when it is unnamed (only
    without ``named``, where the file system allows it)."""
    fd, tmp = -1, None
    if _O_TMPFILE and not named:
        try:
            fd = os.open(parent, _O_TMPFILE | os.O_RDWR | _CLOEXEC, 0o600)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise  # e.g. the directory is gone: the caller makes it again
    if fd < 0:
        tmp = os.path.join(parent, f".tmp-{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _CLOEXEC, 0o600)
    try:
        source = body.open()
        while chunk := source.read(_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        if tmp:
            os.unlink(tmp)
        raise
    return tmp, fd


def _link(fd: int, tmp: str | None, name: str, dir_fd: int) -> bool | None:
    """Give the new file ``name`` in ``dir_fd``: True, or False when the name exists. An
    unnamed file is named through ``/proc/self/fd`` (with ``dst_dir_fd``, ``os.link`` is
    ``linkat(..., AT_SYMLINK_FOLLOW)``, which follows that link to the file itself); None
    when that is refused here (a restricted ``/proc``)."""
    try:
        os.link(tmp or f"/proc/self/fd/{fd}", name, dst_dir_fd=dir_fd)
    except FileExistsError:
        return False
    except OSError:
        if tmp is None:
            return None
        raise
    return True


def _file_sha256(path: str) -> str:
    """SHA-256 of a file's content, read with plain system calls (no buffered file object)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return _fd_sha256(fd)
    finally:
        os.close(fd)


def _fd_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(cfg: StorageConfig) -> BlobStore:
    if cfg.scheme == "file":
        return DirectoryStore(cfg.directory)
    return S3Store(cfg)

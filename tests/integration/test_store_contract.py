"""One contract, three stores: the in-memory fake, the directory store and S3 over HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from fakes import MemoryStore

from harness import MotoS3
from ingest.config import StorageConfig
from ingest.errors import StorageError
from ingest.interfaces import BlobStore, Put
from ingest.spool import Spool
from ingest.store import DirectoryStore
from ingest.store_s3 import S3Store

DATA = b"Subject: hi\r\n\r\nbody\r\n"
SHA = hashlib.sha256(DATA).hexdigest()
OTHER = b"Subject: other\r\n\r\nbody\r\n"


@pytest.fixture(params=["memory", "directory", "s3"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Callable[[], tuple[BlobStore, Callable[[str, bytes], None]]]:
    """A store plus a back door that overwrites an object behind the store's back."""

    def build() -> tuple[BlobStore, Callable[[str, bytes], None]]:
        if request.param == "memory":
            mem = MemoryStore()
            return mem, mem.objects.__setitem__
        if request.param == "directory":
            root = tmp_path / "objects"

            def tamper(key: str, data: bytes) -> None:
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                (root / key).write_bytes(data)

            return DirectoryStore(root), tamper
        s3: MotoS3 = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("bucket")
        cfg = StorageConfig(url=f"s3://{bucket}", endpoint_url=s3.endpoint_url, region="us-east-1")
        client = s3.client()
        return S3Store(cfg), lambda k, d: client.put_object(Bucket=bucket, Key=k, Body=d) and None

    return build


def test_put_creates_then_reports_existing(make_store) -> None:
    """The first write creates the object; the same write again says it existed."""
    store, _ = make_store()
    assert store.put("a/b.eml", Spool.of(DATA), "message/rfc822") is Put.CREATED
    assert store.put("a/b.eml", Spool.of(DATA), "message/rfc822") is Put.EXISTED
    assert store.get("a/b.eml") == DATA


def test_existing_object_with_other_content_is_an_error(make_store) -> None:
    """A content-derived key holding different bytes is corruption, never silently accepted."""
    store, tamper = make_store()
    tamper("a/b.eml", OTHER)
    with pytest.raises(StorageError):
        store.put("a/b.eml", Spool.of(DATA), "message/rfc822")
    assert store.get("a/b.eml") == OTHER


def test_derived_documents_keep_the_existing_object(make_store) -> None:
    """With must_match=False an existing object is kept and reported as existing."""
    store, tamper = make_store()
    tamper("a/b.json", OTHER)
    assert (
        store.put("a/b.json", Spool.of(DATA), "application/json", must_match=False) is Put.EXISTED
    )
    assert store.get("a/b.json") == OTHER


def test_s3_put_is_create_only_on_the_server(s3_server: MotoS3, bucket: str) -> None:
    """The PUT carries If-None-Match: the server itself refuses to overwrite (412)."""
    cfg = StorageConfig(url=f"s3://{bucket}", endpoint_url=s3_server.endpoint_url)
    S3Store(cfg).put("k.eml", Spool.of(DATA), "message/rfc822")
    with pytest.raises(ClientError) as err:
        s3_server.client().put_object(Bucket=bucket, Key="k.eml", Body=OTHER, IfNoneMatch="*")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_s3_missing_bucket_is_a_permanent_storage_error(s3_server: MotoS3) -> None:
    """A bucket that does not exist is reported as a StorageError, not retried forever."""
    cfg = StorageConfig(url="s3://no-such-bucket-here", endpoint_url=s3_server.endpoint_url)
    with pytest.raises(StorageError):
        S3Store(cfg).put("k.eml", Spool.of(DATA), "message/rfc822")


def test_replace_overwrites_derived_objects_and_keys_lists_them(make_store) -> None:
    """replace() overwrites (derived documents only); keys() lists what is under a prefix."""
    store, _ = make_store()
    store.put("acct/json/ab/x.json", Spool.of(DATA), "application/json")
    store.replace("acct/json/ab/x.json", Spool.of(OTHER), "application/json")
    assert store.get("acct/json/ab/x.json") == OTHER
    store.put("acct/raw/ab/y.eml", Spool.of(DATA), "message/rfc822")
    assert list(store.keys("acct/raw/")) == ["acct/raw/ab/y.eml"]
    assert list(store.keys("nothing/")) == []


def test_missing_object_is_a_storage_error(make_store) -> None:
    """Reading a key that does not exist raises StorageError on every store."""
    store, _ = make_store()
    with pytest.raises(StorageError):
        store.get("no/such/key")


def test_reader_streams_the_stored_bytes(make_store) -> None:
    """reader() gives the object's exact bytes as a stream; a missing key is a StorageError."""
    store, _ = make_store()
    store.put("acct/raw/ab/y.eml", Spool.of(DATA), "message/rfc822")
    stream = store.reader("acct/raw/ab/y.eml")
    try:
        assert stream.read(5) + stream.read(1 << 20) == DATA
    finally:
        stream.close()
    with pytest.raises(StorageError):
        store.reader("no/such/key").close()

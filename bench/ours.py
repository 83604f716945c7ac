"""Our pipeline as a contender: the real ``ingest poll`` CLI, delete mode, and proof it was right.

Every run starts from an empty ledger (Redis FLUSHALL) and an empty store (a new directory,
or a new key prefix in the moto bucket), so each run stores every message. Afterwards a run
counts as correct only if ``ingest poll`` said ``ok`` with N stored and N deleted, Dovecot
logged ``del=N`` for the session, the mailbox is empty, and the store holds exactly one raw
object per corpus message (named by, and hashing to, its SHA-256) and one JSON document each.
A fast wrong run is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

import redis
import yaml

from bench.contenders import Contender, Job
from bench.corpus import Corpus, Mailbox
from bench.measure import Timed
from harness import MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

ACCOUNT = "bench"
TO_DIRECTORY = "ours: ingest poll -> directory"
TO_S3 = "ours: ingest poll -> S3 (moto)"
INGEST = str(Path(sys.executable).parent / "ingest")
_SUMMARY = re.compile(r"^bench: (\w+); .*?stored (\d+) .*?deleted (\d+),", re.M)
_KEY = re.compile(r"(?:^|/)(raw|json)/([0-9a-f]{2})/([0-9a-f]{64})\.(eml|json)$")


class Ours:
    """Builds ``ingest poll`` contenders that share one Redis and one scratch directory."""

    def __init__(self, scratch: Path, redis_url: str, mailbox: Mailbox) -> None:
        self.scratch = scratch
        self.redis_url = redis_url
        self.mailbox = mailbox
        self.password_file = scratch / "bench-password"
        self.password_file.write_text(mailbox.password)
        self.password_file.chmod(0o600)
        self._runs = count(1)

    def config(self, port: int, storage: Mapping[str, object], delete: str = "after_store") -> Path:
        data = {
            "redis_url": self.redis_url,
            "storage": storage,
            "accounts": [
                {
                    "name": ACCOUNT,
                    "host": "127.0.0.1",
                    "port": port,
                    "security": "plain",  # as the peers: plain POP3 on loopback
                    "allow_plaintext": True,
                    "allow_private_network": True,
                    "username": self.mailbox.user,
                    "password_file": str(self.password_file),
                    "delete": delete,
                }
            ],
        }
        data.update(json.loads(os.environ.get("INGEST_BENCH_SETTINGS") or "{}"))
        path = self.scratch / "ingest.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def argv(self, config: Path) -> list[str]:
        return [INGEST, "--config", str(config), "poll", ACCOUNT]

    def _fresh_ledger(self) -> None:
        redis.Redis.from_url(self.redis_url).flushall()

    def directory(self) -> Contender:
        def prepare(port: int, corpus: Corpus) -> Job:
            self._fresh_ledger()
            root = self.scratch / f"store-{next(self._runs)}"
            config = self.config(port, {"url": f"file://{root}"})

            def check(timed: Timed) -> list[str]:
                return self._common(timed, corpus) + verify_objects(corpus, directory_objects(root))

            # No cleanup: the store stays until the scratch directory goes at the end. On
            # ext4 without a journal (these VMs) the inode allocator skips every inode
            # deleted in the last 5 minutes (when its table block is dirty) one by one, on
            # every new file; deleting this store's 1,000 files and 400 directories right
            # before the next timed run put ~0.5 s of kernel time into that run.
            return Job(self.argv(config), check=check)

        return Contender(TO_DIRECTORY, "ours", deletes=True, prepare=prepare)

    def s3(self, moto: MotoS3, bucket: str) -> Contender:
        client = moto.client()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

        def prepare(port: int, corpus: Corpus) -> Job:
            self._fresh_ledger()
            prefix = f"run{next(self._runs)}"
            storage = {
                "url": f"s3://{bucket}/{prefix}",
                "endpoint_url": moto.endpoint_url,
                "region": "us-east-1",
                "addressing_style": "path",
            }
            config = self.config(port, storage)

            def check(timed: Timed) -> list[str]:
                return self._common(timed, corpus) + verify_objects(
                    corpus, s3_objects(client, bucket, prefix)
                )

            return Job(
                self.argv(config),
                env=env,
                check=check,
                cleanup=lambda: delete_prefix(client, bucket, prefix),
            )

        return Contender(TO_S3, "ours", deletes=True, prepare=prepare)

    def _common(self, timed: Timed, corpus: Corpus) -> list[str]:
        problems = []
        m = _SUMMARY.search(timed.stdout)
        if m is None:
            problems.append(f"no summary line from ingest poll: {timed.stdout[-300:]!r}")
        elif (m[1], int(m[2]), int(m[3])) != ("ok", corpus.count, corpus.count):
            problems.append(f"ingest poll said: {m[0]}")
        left = self.mailbox.count()
        if left:
            problems.append(f"{left} messages left in the mailbox")
        return problems


def directory_objects(root: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(key, reader) for every file below ``root`` (stray temporary files included)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path.relative_to(root).as_posix(), path.read_bytes


def s3_objects(
    client: S3Client, bucket: str, prefix: str
) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(key, reader) for every object under ``prefix/`` in ``bucket``."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
    for page in pages:
        for obj in page.get("Contents", []):
            key = obj["Key"]
            yield key, _getter(client, bucket, key)


def _getter(client: S3Client, bucket: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return read


def verify_objects(corpus: Corpus, objects: Iterator[tuple[str, Callable[[], bytes]]]) -> list[str]:
    """Exactly one raw object and one JSON document per corpus message, raw bytes verified."""
    raw: dict[str, int] = {}
    docs: dict[str, int] = {}
    problems: list[str] = []
    for key, read in objects:
        m = _KEY.search(key)
        if m is None:
            if "/att/" not in key:  # decoded attachments may be stored beside them
                problems.append(f"unexpected object {key}")
            continue
        kind, sha = m[1], m[3]
        if kind == "raw":
            raw[sha] = raw.get(sha, 0) + 1
            if hashlib.sha256(read()).hexdigest() != sha:
                problems.append(f"raw object {key} does not hash to its name")
        else:
            docs[sha] = docs.get(sha, 0) + 1
            if json.loads(read()).get("sha256", sha) != sha:
                problems.append(f"JSON document {key} names another message")
    for what, seen in (("raw", raw), ("JSON", docs)):
        missing = corpus.sha256s - seen.keys()
        extra = seen.keys() - corpus.sha256s
        if missing or extra:
            problems.append(f"{what}: {len(missing)} messages missing, {len(extra)} unexpected")
        if any(n > 1 for n in seen.values()):
            problems.append(f"{what}: some message stored more than once")
    return problems[:10]


def delete_prefix(client: S3Client, bucket: str, prefix: str) -> None:
    """Free moto's memory once a run is verified."""
    keys = [key for key, _ in s3_objects(client, bucket, prefix)]
    for i in range(0, len(keys), 1000):
        batch: list[ObjectIdentifierTypeDef] = [{"Key": k} for k in keys[i : i + 1000]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

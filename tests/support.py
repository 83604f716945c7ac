"""Helpers shared by integration and end-to-end tests: configs, CLI runs, bucket listings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from harness import Dovecot, MailUser, MotoS3
from harness.process import log_tail

ROOT = Path(__file__).resolve().parent.parent


def account_entry(
    dovecot: Dovecot,
    user: MailUser,
    *,
    name: str = "support",
    security: str = "starttls",
    delete: str = "after_store",
    interval: int = 60,
    **extra: Any,
) -> dict[str, Any]:
    """A config entry for ``user``; the password is passed by env var INGEST_PW_<NAME>."""
    port = dovecot.pop3s_port if security == "tls" else dovecot.pop3_port
    return {
        "name": name,
        "host": "localhost",
        "port": port,
        "security": security,
        "ca_file": str(dovecot.ca_file),
        "username": user.name,
        "password_env": password_env(name),
        "delete": delete,
        "interval": interval,
        "timeout": 10,
        "allow_private_network": True,
        **extra,
    }


def password_env(name: str) -> str:
    return f"INGEST_PW_{name.upper().replace('-', '_')}"


def write_config(
    path: Path,
    *,
    redis_url: str,
    accounts: list[dict[str, Any]],
    s3: MotoS3 | None = None,
    bucket: str | None = None,
    prefix: str = "",
    directory: Path | None = None,
    index: bool = False,
    **extra: Any,
) -> Path:
    if directory is not None:
        storage: dict[str, Any] = {"url": f"file://{directory}"}
    else:
        assert s3 is not None and bucket is not None
        storage = {
            "url": f"s3://{bucket}/{prefix}".rstrip("/"),
            "endpoint_url": s3.endpoint_url,
            "region": "us-east-1",
        }
    if index:
        storage["index"] = True
    data = {"redis_url": redis_url, "storage": storage, "accounts": accounts, **extra}
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(
    config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``ingest --config CONFIG ARGS`` as a real process with the venv's interpreter."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ingest", "--config", str(config), "--log-json", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def bucket_objects(s3: MotoS3, bucket: str) -> dict[str, bytes]:
    client = s3.client()
    out: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def split_objects(objects: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    raws = {k: v for k, v in objects.items() if "/raw/" in k}
    docs = {k: v for k, v in objects.items() if "/json/" in k}
    return raws, docs


def wait_until(predicate: Callable[[], bool], timeout: float, logs: list[Path]) -> None:
    """Poll ``predicate`` until true; on timeout fail with the tails of ``logs``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p}\n{log_tail(p, 60)}" for p in logs)
            raise AssertionError(f"condition not met in {timeout}s\n{tails}")
        time.sleep(0.3)


def assert_stored_exactly_once(s3: MotoS3, bucket: str, expected: Iterable[bytes]) -> None:
    """Every expected message is a raw object exactly once, each with its one JSON."""
    raws, docs = split_objects(bucket_objects(s3, bucket))
    assert sorted(raws.values()) == sorted(expected)
    assert len(docs) == len(raws)
    assert {json.loads(d)["raw_key"] for d in docs.values()} == set(raws)


def poll_until_unlocked(
    config: Path, env: dict[str, str], account: str = "support", timeout: float = 30
) -> str:
    """`ingest poll` until it is not 'busy' (75: a killed poll's lock has not expired yet);
    it must then succeed. Returns its stdout."""
    deadline = time.monotonic() + timeout
    while (result := run_cli(config, "poll", account, env=env)).returncode == 75:
        assert time.monotonic() < deadline, "the killed poll's lock never expired"
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_index_rows_once(objects: dict[str, bytes], prefix: str = "") -> None:
    """Exactly one index row per JSON document, at the key and with the bytes its document
    gives (what `ingest index rebuild` would write), and no other row."""
    from ingest import index  # noqa: PLC0415 - only index tests need it

    _, docs = split_objects(objects)
    rows = {k: v for k, v in objects.items() if "/account=" in k and k.endswith(".ndjson")}
    wanted = {}
    for body in docs.values():
        doc = json.loads(body)
        wanted[index.row_key(doc, prefix)] = index.row_bytes(index.build_row(doc, prefix))
    assert rows == wanted


def http_get(url: str, timeout: float = 30) -> tuple[int, str]:
    """GET ``url``: (status, body); (0, "") when nothing answers."""
    import urllib.error  # noqa: PLC0415 - only the metrics tests speak HTTP
    import urllib.request  # noqa: PLC0415

    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # noqa: S310 - test URL
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus exposition text, keyed by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out

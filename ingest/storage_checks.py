"""Start-up check of the storage options: can the bucket and KMS honour what is configured?

Retention or a legal hold needs Object Lock enabled on the bucket (AWS refuses such PUTs
otherwise; some S3-compatible stores ignore them silently), and SSE-KMS needs a KMS key
that exists and is enabled (some stores accept any key id). Problems name the accounts
and keys that ask for the option, so nothing is ever written without it unnoticed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ingest.config import Settings, StorageConfig
from ingest.storage_options import StorageOptions
from ingest.store_s3 import S3Store, make_s3_client


def _wanted(settings: Settings) -> list[tuple[str, StorageOptions]]:
    """Each account's options (the defaults when there is no account), labelled by key."""
    if not settings.accounts:
        return [("storage", settings.storage)]
    return [(f"accounts({a.name})", settings.options_for(a)) for a in settings.accounts]


def protection_problems(settings: Settings, store: S3Store | None = None) -> list[str]:
    """Every option the bucket or KMS cannot honour; empty when all is well (or no S3)."""
    cfg = settings.storage
    if cfg.scheme != "s3":
        return []
    wanted = _wanted(settings)
    locking = [w for w, o in wanted if o.object_lock is not None or o.legal_hold]
    problems = []
    if locking:
        client = store.client if store else make_s3_client(cfg)
        problems += _lock_problems(client, cfg.bucket, locking)
    keys: dict[str, list[str]] = defaultdict(list)
    for where, opts in wanted:
        if opts.sse == "kms" and opts.kms_key_id:
            keys[opts.kms_key_id].append(where)
    if keys:
        kms = kms_client(cfg)
        problems += [p for key, whom in keys.items() if (p := _kms_problem(kms, key, whom))]
    return problems


def _lock_problems(client: Any, bucket: str, whom: list[str]) -> list[str]:
    asking = f"{', '.join(whom)} ask(s) for object_lock or legal_hold"
    try:
        reply = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "ObjectLockConfigurationNotFoundError":
            return [
                f"storage s3://{bucket}: Object Lock is not enabled on the bucket, but {asking}"
                " (Object Lock can only be enabled on a versioned bucket; create the bucket"
                " with it, or remove those options)"
            ]
        return [f"storage s3://{bucket}: cannot read the Object Lock configuration: {code}"]
    except BotoCoreError as err:
        return [f"storage s3://{bucket}: unreachable reading the Object Lock configuration: {err}"]
    if reply.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
        return [f"storage s3://{bucket}: Object Lock is not enabled on the bucket, but {asking}"]
    return []


def kms_client(cfg: StorageConfig) -> Any:
    """A KMS client at ``kms_endpoint_url`` (default: the storage ``endpoint_url``)."""
    config = Config(
        region_name=cfg.region,
        connect_timeout=cfg.timeout,
        read_timeout=cfg.timeout,
        retries={"mode": "standard", "total_max_attempts": cfg.max_attempts},
    )
    return boto3.client("kms", endpoint_url=cfg.kms_endpoint_url or cfg.endpoint_url, config=config)


def _kms_problem(kms: Any, key_id: str, whom: list[str]) -> str | None:
    where = f"{', '.join(whom)}: kms_key_id {key_id}"
    try:
        meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "NotFoundException":
            return f"{where}: no such KMS key"
        return f"{where}: cannot describe the KMS key: {code}"
    except BotoCoreError as err:
        return f"{where}: KMS unreachable: {err}"
    if meta.get("KeyState") != "Enabled":
        return f"{where}: the KMS key is {meta.get('KeyState')}, not Enabled"
    return None

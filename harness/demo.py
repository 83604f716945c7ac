"""``make demo``: the real main job on embedded defaults, from nothing to a filled store.

Starts a private Redis and a private Dovecot seeded with the shared real-world corpus,
writes a config that stores into ``demo-out/store`` (a local-directory store), runs a
real Celery worker and beat until the mailbox is drained, then prints what landed where.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from harness.celery_procs import CeleryProcess
from harness.corpus import corpus_files
from harness.dovecot import Dovecot
from harness.process import log_tail
from harness.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("INGEST_DEMO_OUT", ROOT / "demo-out")).absolute()
console = Console()


def _config(redis_url: str, dovecot: Dovecot, user: str, secret_file: Path) -> Path:
    data = {
        "redis_url": redis_url,
        "storage": {"url": f"file://{OUT / 'store'}"},
        "dispatch_interval": 1,
        "accounts": [
            {
                "name": "demo",
                "host": "localhost",
                "port": dovecot.pop3_port,
                "security": "starttls",
                "ca_file": str(dovecot.ca_file),
                "username": user,
                "password_file": str(secret_file),
                "delete": "after_store",
                "interval": 5,
                "allow_private_network": True,  # the demo server is on loopback
            }
        ],
    }
    path = OUT / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _drain(dovecot: Dovecot, user: str, worker: CeleryProcess, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with console.status("worker and beat are polling the mailbox...") as status:
        while (left := dovecot.message_count(user)) and time.monotonic() < deadline:
            if not worker.alive():
                sys.exit(f"worker died:\n{log_tail(worker.log_path, 40)}")
            status.update(f"worker and beat are polling: {left} message(s) left on the server")
            time.sleep(0.5)
    if dovecot.message_count(user):
        sys.exit(f"mailbox not drained in {timeout}s; see {worker.log_path}")


def _report(store: Path) -> None:
    docs = [json.loads(p.read_text()) for p in sorted(store.rglob("*.json"))]
    raws = list(store.rglob("*.eml"))
    table = Table(title=f"What landed where (first 12 of {len(docs)})")
    for col in ("subject", "from", "att.", "raw object"):
        table.add_column(col, overflow="ellipsis", no_wrap=True)
    for doc in docs[:12]:
        sender = (doc.get("from") or [{}])[0].get("address", "")
        key = doc["raw_key"]
        table.add_row(
            (doc.get("subject") or "")[:40],
            sender[:28],
            str(len(doc["attachments"])),
            f"{key[: key.index('/raw/') + 12]}....eml",
        )
    console.print(table)
    failed = sum(1 for d in docs if d.get("parse_error"))
    size = sum(p.stat().st_size for p in raws)
    console.print(
        f"{len(raws)} raw messages ({size:,} bytes) and {len(docs)} JSON documents "
        f"in {store} ({failed} flagged as unparseable, raw kept)"
    )
    console.print("Keys: {account}/raw/{sha[:2]}/{sha}.eml and {account}/json/{sha[:2]}/{sha}.json")


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "logs").mkdir(parents=True)
    secret = OUT / "demo-password"
    user, password = "demo", secrets.token_urlsafe(16)
    secret.write_text(password)
    secret.chmod(0o600)
    workdir = Path(tempfile.mkdtemp(prefix="ingest-demo-dovecot-"))
    try:
        with RedisServer(OUT / "redis") as redis_server, Dovecot(workdir) as dovecot:
            dovecot.add_user(user, password)
            for path in corpus_files():
                dovecot.deliver(user, path.read_bytes())
            console.print(
                f"Dovecot on 127.0.0.1:{dovecot.pop3_port} (STLS) holds "
                f"{dovecot.message_count(user)} messages; Redis at {redis_server.url}"
            )
            cfg = _config(redis_server.url, dovecot, user, secret)
            with (
                CeleryProcess("worker", cfg, OUT / "logs" / "worker.log") as worker,
                CeleryProcess("beat", cfg, OUT / "logs" / "beat.log"),
            ):
                _drain(dovecot, user, worker)
                time.sleep(1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _report(OUT / "store")
    console.print(
        f"\nConfig used: {cfg}\nLogs: {OUT / 'logs'}\n"
        "To use real S3 and a real mailbox, copy that config and change storage.url to "
        "s3://YOUR-BUCKET/prefix\n(plus endpoint_url for MinIO, Ceph or R2), the account's "
        "host, port, username and password_env/password_file, then run\n"
        "  .venv/bin/ingest --config your.yaml check\n"
        "  .venv/bin/ingest --config your.yaml poll demo     # or: make worker / make beat"
    )


if __name__ == "__main__":
    main()
